"""LoRA adapters in and out of a backbone, in the formats other tools read.

A backbone's ``save_adapter`` writes diffusers' *model-level* file (``pytorch_lora_weights.safetensors``
with unprefixed module keys and the peft ``LoraConfig`` in the ``lora_adapter_metadata`` header).
[`export_lora`][rewardkit.training.export_lora] turns it into

* a **pipeline-level diffusers file** (keys prefixed ``transformer.``), which the model's
  diffusers pipeline loads with ``pipe.load_lora_weights(folder)``, and
* a **peft adapter folder** (``adapter_config.json`` + ``adapter_model.safetensors`` with
  ``base_model.model.`` keys), which ``peft.PeftModel.from_pretrained(transformer, folder)`` loads.

[`load_lora`][rewardkit.training.load_lora] reads any of the three back into a backbone, so an
SFT adapter feeds Stage II (or any other tool's LoRA in these formats) without a conversion step.
"""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from rewardkit.backbone.protocol import Backbone

__all__ = ["LoraExport", "export_lora", "load_lora"]

LORA_FILE: Final[str] = "pytorch_lora_weights.safetensors"
PEFT_WEIGHTS: Final[str] = "adapter_model.safetensors"
PEFT_CONFIG: Final[str] = "adapter_config.json"
_METADATA_KEY: Final[str] = "lora_adapter_metadata"
_PIPELINE_PREFIX: Final[str] = "transformer."
_PEFT_PREFIX: Final[str] = "base_model.model."


@dataclass(frozen=True)
class LoraExport:
    """Where [`export_lora`][rewardkit.training.export_lora] wrote the adapter.

    Attributes:
        diffusers_file: pipeline-level ``pytorch_lora_weights.safetensors``
            (``pipe.load_lora_weights(diffusers_file.parent)``).
        peft_dir: peft adapter folder (``PeftModel.from_pretrained(transformer, peft_dir)``).
    """

    diffusers_file: Path
    peft_dir: Path


def _read(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and the LoRA config from a safetensors file's ``lora_adapter_metadata``."""
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(file), framework="pt") as handle:
        metadata = handle.metadata() or {}
        for key in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
            tensors[key] = handle.get_tensor(key)
    config = json.loads(metadata[_METADATA_KEY]) if _METADATA_KEY in metadata else {}
    return tensors, config


def _write(file: Path, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    contiguous = {k: v.contiguous() for k, v in tensors.items()}
    save_file(contiguous, str(file), metadata={"format": "pt", _METADATA_KEY: json.dumps(config, indent=2)})
    return file


def export_lora(backbone: Backbone, directory: str | Path) -> LoraExport:
    """Write the backbone's current adapter as a diffusers pipeline file and a peft folder.

    Args:
        backbone: a backbone with an adapter (swap EMA weights in first to export them).
        directory: output folder; gets ``diffusers/`` and ``peft/``.

    Returns:
        The written paths.

    Raises:
        ValueError: the backbone has no adapter.
    """
    out = Path(directory)
    with tempfile.TemporaryDirectory() as tmp:
        tensors, config = _read(Path(backbone.save_adapter(tmp)) / LORA_FILE)
    if not config:
        raise ValueError("the backbone's saved adapter carries no LoRA config in its metadata")
    pipeline_config = {f"{_PIPELINE_PREFIX}{k}": v for k, v in config.items()}
    diffusers_file = _write(
        out / "diffusers" / LORA_FILE,
        {f"{_PIPELINE_PREFIX}{k}": v for k, v in tensors.items()},
        pipeline_config,
    )
    peft_dir = out / "peft"
    _write(peft_dir / PEFT_WEIGHTS, {f"{_PEFT_PREFIX}{k}": v for k, v in tensors.items()}, config)
    peft_config = {**config, "peft_type": config.get("peft_type", "LORA")}
    (peft_dir / PEFT_CONFIG).write_text(json.dumps(peft_config, indent=2, sort_keys=True) + "\n")
    return LoraExport(diffusers_file=diffusers_file, peft_dir=peft_dir)


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items()}


def load_lora(backbone: Backbone, path: str | Path) -> None:
    """Load a LoRA adapter in any supported layout into ``backbone`` (replacing its adapter).

    Accepted: a folder written by the backbone's ``save_adapter`` (e.g. an SFT run's
    ``adapter/``), a folder or file with a pipeline-level diffusers
    ``pytorch_lora_weights.safetensors`` (keys ``transformer.…``, as
    [`export_lora`][rewardkit.training.export_lora] and ``save_lora_weights`` write), or a peft
    adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``).

    Raises:
        FileNotFoundError: ``path`` holds none of these.
        ValueError: a diffusers file without LoRA config metadata, or keys for no transformer.
    """
    source = Path(path).expanduser()
    if source.is_file():
        file, folder = source, source.parent
    else:
        file, folder = source / LORA_FILE, source
    if (folder / PEFT_CONFIG).is_file() and (folder / PEFT_WEIGHTS).is_file() and not file.is_file():
        tensors, _ = _read(folder / PEFT_WEIGHTS)
        config = json.loads((folder / PEFT_CONFIG).read_text(encoding="utf-8"))
        tensors = _strip(tensors, _PEFT_PREFIX)
    elif file.is_file():
        tensors, config = _read(file)
        if not any(k.startswith(_PIPELINE_PREFIX) for k in tensors):
            if file.name == LORA_FILE and source.is_dir():
                backbone.load_adapter(folder)  # the backbone's own layout
                return
        else:
            tensors = _strip(
                {k: v for k, v in tensors.items() if k.startswith(_PIPELINE_PREFIX)}, _PIPELINE_PREFIX
            )
            config = {
                k.removeprefix(_PIPELINE_PREFIX): v
                for k, v in config.items()
                if k.startswith(_PIPELINE_PREFIX)
            }
        if not config:
            raise ValueError(
                f"{file} has no LoRA config in its '{_METADATA_KEY}' metadata; re-save it with diffusers "
                "(save_lora_weights) or rewardkit.training.export_lora"
            )
    else:
        raise FileNotFoundError(
            f"no LoRA adapter at {str(source)!r}: expected a folder with {LORA_FILE} (rewardkit / diffusers) "
            f"or with {PEFT_CONFIG} + {PEFT_WEIGHTS} (peft), or a .safetensors file"
        )
    with tempfile.TemporaryDirectory() as tmp:
        _write(Path(tmp) / LORA_FILE, tensors, config)
        backbone.load_adapter(tmp)
