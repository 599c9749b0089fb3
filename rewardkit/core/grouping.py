"""Stable group ids: one int64 label per prompt (and reference set), equal on every process.

Group-relative advantages need every rollout of one prompt to carry the same integer label, on
every rank and in every run (resumed runs, evaluation, multi-node jobs). Python's ``hash`` is
salted per process, so these ids come from a keyed BLAKE2b digest (8 bytes, read as a signed
little-endian int64) of a canonical, length-prefixed byte encoding of the inputs:

* the prompt as UTF-8;
* each reference in order: a tensor by its dtype name, shape and raw little-endian bytes (of
  ``.detach().cpu().contiguous()``, so strides, device and autograd state do not matter),
  ``bytes`` as they are, a ``str`` (a path or an id) as UTF-8 — the text itself, never the
  content of a file it may name.

Every field is tagged with its kind and prefixed by its length, so ``("ab", "c")`` and
``("a", "bc")``, or the text ``"x"`` and the bytes ``b"x"``, give different ids. Two different
inputs share an id with probability about :math:`2^{-64}` per pair.
"""

import hashlib
import struct
import sys
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["Reference", "group_id", "group_ids"]

Reference = Tensor | bytes | str
"""A reference a group is conditioned on: an image tensor, encoded bytes, or a path / id."""

# Domain separation and encoding version: change it whenever the byte encoding changes.
_PERSON = b"rewardkit.gid.v1"


def _u64(value: int) -> bytes:
    return struct.pack("<Q", value)


def _field(h: hashlib.blake2b, data: bytes) -> None:
    """Feed ``data`` preceded by its length, so that consecutive fields cannot run together."""
    h.update(_u64(len(data)))
    h.update(data)


def _utf8(text: str) -> bytes:
    # surrogatepass: every Python str (even a lone surrogate) has exactly one encoding.
    return text.encode("utf-8", errors="surrogatepass")


def _tensor_bytes(t: Tensor, name: str) -> bytes:
    """Raw little-endian bytes of ``t``'s values, independent of device, strides and views."""
    if t.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {t.layout}; call .to_dense()")
    flat = t.detach().cpu().resolve_conj().resolve_neg().contiguous().reshape(-1)
    raw = flat.view(torch.uint8)  # works for every dense dtype, bf16 included (numpy has no bf16)
    size = flat.element_size()
    if sys.byteorder == "big" and size > 1:  # canonical byte order: little-endian
        raw = raw.reshape(-1, size).flip(1).reshape(-1).contiguous()
    return raw.numpy().tobytes()


def _feed_reference(h: hashlib.blake2b, ref: object, name: str) -> None:
    if isinstance(ref, Tensor):
        h.update(b"T")
        _field(h, _utf8(str(ref.dtype)))
        h.update(_u64(ref.ndim))
        for dim in ref.shape:
            h.update(_u64(int(dim)))
        _field(h, _tensor_bytes(ref, name))
    elif isinstance(ref, bytes | bytearray):
        h.update(b"B")
        _field(h, bytes(ref))
    elif isinstance(ref, str):
        h.update(b"S")
        _field(h, _utf8(ref))
    else:
        raise TypeError(
            f"{name} must be a torch.Tensor, bytes or str (a path or an id), got {type(ref).__name__}"
        )


def _check_references(references: object, name: str) -> Sequence[object]:
    """Return ``references`` if it is a sequence of references (not a single one), else raise."""
    if isinstance(references, str | bytes | bytearray | Tensor) or not isinstance(references, Sequence):
        raise TypeError(
            f"{name} must be a sequence of references (e.g. [image] or (path,)), "
            f"got {type(references).__name__}"
        )
    return references


def _digest(prompt: object, references: object, prompt_name: str, refs_name: str) -> int:
    if not isinstance(prompt, str):
        raise TypeError(f"{prompt_name} must be a str, got {type(prompt).__name__}")
    refs = _check_references(references, refs_name)
    h = hashlib.blake2b(digest_size=8, person=_PERSON)
    _field(h, _utf8(prompt))
    h.update(_u64(len(refs)))
    for j, ref in enumerate(refs):
        _feed_reference(h, ref, f"{refs_name}[{j}]")
    return int.from_bytes(h.digest(), "little", signed=True)


def group_id(prompt: str, references: Sequence[Reference] = ()) -> int:
    """Stable int64 group id of a prompt and its reference set, the same on every process.

    The id is a pure function of the values: it does not depend on the process, the run, the
    device or memory layout of a tensor, or ``PYTHONHASHSEED`` (see the module docstring for
    the exact encoding). The order of ``references`` matters.

    Args:
        prompt: the text prompt.
        references: the group's references in order: image tensors (hashed by dtype, shape and
            values), encoded ``bytes``, or ``str`` paths / ids (hashed as text, not file content).

    Returns:
        An int in ``[-2**63, 2**63)``, usable as a ``torch.int64`` group label.

    Raises:
        TypeError: ``prompt`` is not a str, ``references`` is not a sequence, or a reference is
            not a tensor, bytes or str.

    Example:
        >>> import torch
        >>> from rewardkit.core.grouping import group_id
        >>> group_id("a red cube") == group_id("a red cube")
        True
        >>> group_id("a red cube") == group_id("a red cube", ["ref.png"])
        False
        >>> image = torch.arange(12.0).reshape(3, 4)
        >>> group_id("a cat", [image]) == group_id("a cat", [image.t().contiguous().t()])  # layout
        True
        >>> group_id("a cat", [image]) == group_id("a cat", [image.reshape(4, 3)])  # shape matters
        False
        >>> -(2**63) <= group_id("a cat", [image, b"raw", "id-7"]) < 2**63
        True
    """
    return _digest(prompt, references, "prompt", "references")


def group_ids(
    prompts: Sequence[str],
    references: Sequence[Sequence[Reference]] | None = None,
    *,
    device: torch.device | str | None = None,
) -> Tensor:
    """Stable int64 group labels for a batch: ``group_id(prompts[i], references[i])`` per sample.

    Samples with the same prompt and references get the same label, on every process, so the
    result can be passed as ``group_ids`` to :func:`rewardkit.group_advantages` before or after
    gathering a batch across ranks.

    Args:
        prompts: `N` prompts, one per sample (repeat a prompt for each of its rollouts).
        references: ``None`` (no references), or `N` reference sequences, one per sample.
        device: device of the returned tensor (default: CPU).

    Returns:
        `(N,)` ``torch.int64`` tensor of group ids.

    Raises:
        TypeError: ``prompts`` is a single str or holds a non-str, a ``references[i]`` is not a
            sequence, or a reference is not a tensor, bytes or str.
        ValueError: ``references`` and ``prompts`` have different lengths.

    Example:
        >>> import torch
        >>> from rewardkit.core.grouping import group_id, group_ids
        >>> ids = group_ids(["a cat", "a dog", "a cat"])
        >>> ids.dtype, ids.shape
        (torch.int64, torch.Size([3]))
        >>> bool(ids[0] == ids[2]), bool(ids[0] == ids[1])
        (True, False)
        >>> int(ids[1]) == group_id("a dog")
        True
    """
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise TypeError(f"prompts must be a sequence of str (one per sample), got {type(prompts).__name__}")
    if references is None:
        refs: Sequence[object] = [()] * len(prompts)
    else:
        refs = _check_references(references, "references")
        if len(refs) != len(prompts):
            raise ValueError(
                f"references has {len(refs)} entries but prompts has {len(prompts)}; give one "
                f"reference sequence per prompt (use () for a prompt without references)"
            )
    values = [
        _digest(p, r, f"prompts[{i}]", f"references[{i}]")
        for i, (p, r) in enumerate(zip(prompts, refs, strict=True))
    ]
    return torch.tensor(values, dtype=torch.int64, device=device)
