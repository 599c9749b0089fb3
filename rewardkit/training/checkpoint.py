"""Atomic, pickle-free training checkpoints: safetensors for tensors, JSON for everything else.

A checkpoint is a folder ``step_<n>/`` with two files:

- ``tensors.safetensors``: every tensor of the state, under a flat key such as
  ``optimizer/state/3/exp_avg``;
- ``manifest.json``: the state's structure with tensors replaced by ``{"__tensor__": key}``, the
  SHA-256 of the tensor file, the format version and a caller-supplied ``fingerprint`` (e.g. a
  hash of the config) that must match on resume.

Writes go to a temporary folder, are fsynced, then renamed into place, and the ``latest`` file is
replaced atomically last: a run killed at any moment leaves either the previous checkpoint or the
new one, never a half-written one. Loading verifies the hash and the fingerprint and says what is
wrong instead of silently starting over.
"""

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import torch
from safetensors.torch import load_file, save_file

__all__ = [
    "CheckpointError",
    "latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]

FORMAT_VERSION: Final[int] = 1
_TENSOR: Final[str] = "__tensor__"
_TUPLE: Final[str] = "__tuple__"
_INT_KEYS: Final[str] = "__int_keys__"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, corrupt, or from a different configuration."""


def _flatten(value: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors by references into ``tensors``; keep JSON-able structure."""
    if isinstance(value, torch.Tensor):
        key = prefix or "tensor"
        # safetensors needs contiguous, non-shared storage; clone keeps aliasing from leaking in.
        tensors[key] = value.detach().to("cpu").contiguous().clone()
        return {_TENSOR: key}
    if isinstance(value, Mapping):
        keys = list(value.keys())
        if all(isinstance(k, int) for k in keys) and keys:  # e.g. optimizer state indices
            return {_INT_KEYS: [[k, _flatten(value[k], f"{prefix}/{k}", tensors)] for k in keys]}
        if not all(isinstance(k, str) for k in keys):
            raise TypeError(f"checkpoint state at {prefix or '/'!r} has non-string keys {keys[:3]}")
        return {k: _flatten(v, f"{prefix}/{k}" if prefix else k, tensors) for k, v in value.items()}
    if isinstance(value, tuple):
        return {_TUPLE: [_flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(value)]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(
        f"checkpoint state at {prefix!r} holds a {type(value).__name__}; only tensors, numbers, "
        "strings, None, lists, tuples and dicts can be saved (convert it first)"
    )


def _unflatten(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if _TENSOR in value:
            return tensors[value[_TENSOR]]
        if _TUPLE in value:
            return tuple(_unflatten(v, tensors) for v in value[_TUPLE])
        if _INT_KEYS in value:
            return {int(k): _unflatten(v, tensors) for k, v in value[_INT_KEYS]}
        return {k: _unflatten(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_unflatten(v, tensors) for v in value]
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    _fsync(tmp)
    os.replace(tmp, path)


def save_checkpoint(
    directory: str | Path,
    step: int,
    state: Mapping[str, Any],
    *,
    fingerprint: str = "",
    keep: int | None = 2,
) -> Path:
    """Write ``state`` as checkpoint ``directory/step_<step>`` atomically and point ``latest`` at it.

    Args:
        directory: the run's checkpoint folder.
        step: the global step; names the checkpoint.
        state: nested dicts/lists/tuples of tensors, numbers, strings and None (model and
            optimizer ``state_dict()``s, RNG states, counters, data position...).
        fingerprint: a string that must match on resume (e.g. a hash of the training config).
        keep: keep only the newest ``keep`` checkpoints (None keeps all).

    Returns:
        The checkpoint folder.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step}"
    tmp = root / f".step_{step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tensors: dict[str, torch.Tensor] = {}
    structure = _flatten(dict(state), "", tensors)
    tensor_file = tmp / "tensors.safetensors"
    save_file(tensors, str(tensor_file))
    _fsync(tensor_file)
    manifest = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "fingerprint": fingerprint,
        "sha256": _sha256(tensor_file),
        "state": structure,
    }
    _atomic_write_text(tmp / "manifest.json", json.dumps(manifest))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync(root)
    _atomic_write_text(root / "latest", final.name)
    if keep is not None:
        _prune(root, keep, protect=final.name)
    return final


def _prune(root: Path, keep: int, *, protect: str) -> None:
    steps = sorted(
        (p for p in root.glob("step_*") if p.is_dir() and p.name[5:].isdigit()), key=lambda p: int(p.name[5:])
    )
    for old in steps[: max(0, len(steps) - keep)]:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The checkpoint ``latest`` points to, or None when the folder holds no checkpoint yet."""
    root = Path(directory)
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    target = root / pointer.read_text(encoding="utf-8").strip()
    if not target.is_dir():
        raise CheckpointError(f"{pointer} points to {target.name}, which does not exist")
    return target


def load_checkpoint(path: str | Path, *, fingerprint: str | None = None) -> dict[str, Any]:
    """Load a checkpoint folder written by [`save_checkpoint`][rewardkit.training.save_checkpoint].

    Args:
        path: a ``step_<n>`` folder, or a run folder (then ``latest`` is followed).
        fingerprint: when given, must equal the one saved (guards against resuming a different
            configuration).

    Returns:
        The state, with tensors on the CPU.

    Raises:
        CheckpointError: missing files, a hash mismatch (corrupt tensors), an unreadable
            manifest, a different format version or fingerprint.
    """
    folder = Path(path)
    if (folder / "latest").is_file():
        resolved = latest_checkpoint(folder)
        assert resolved is not None
        folder = resolved
    manifest_file, tensor_file = folder / "manifest.json", folder / "tensors.safetensors"
    if not manifest_file.is_file() or not tensor_file.is_file():
        raise CheckpointError(
            f"{folder} is not a rewardkit checkpoint (manifest.json / tensors.safetensors missing)"
        )
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{manifest_file} is corrupt: {err}") from err
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{folder} has checkpoint format {manifest.get('format_version')}, "
            f"this rewardkit reads {FORMAT_VERSION}"
        )
    if _sha256(tensor_file) != manifest.get("sha256"):
        raise CheckpointError(f"{tensor_file} does not match the hash in its manifest: the file is corrupt")
    if fingerprint is not None and manifest.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"{folder} was written by a run with a different configuration (fingerprint "
            f"{manifest.get('fingerprint')!r}, this run {fingerprint!r}); refusing to resume it. "
            "Use a new output folder or the original configuration."
        )
    tensors = load_file(str(tensor_file))
    state: dict[str, Any] = _unflatten(manifest["state"], tensors)
    return state
