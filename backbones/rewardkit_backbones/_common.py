"""Helpers shared by the backbone adapters: options, input checks, precision, LoRA, layouts.

Kept small on purpose; each adapter file holds everything specific to its model.
"""

import contextlib
import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from torch import nn

__all__ = [
    "CHECKPOINT_DEFAULTS_FILE",
    "POSITION_SCHEMES",
    "PositionScheme",
    "adapter_disabled",
    "add_lora",
    "autocast",
    "check_references",
    "check_target_size",
    "has_lora",
    "load_lora",
    "lora_parameters",
    "parse_options",
    "place_on_canvas",
    "resolve_device",
    "resolve_dtype",
    "save_lora",
    "timesteps",
    "write_checkpoint_defaults",
]

PositionScheme = Literal["index", "offset", "diagonal"]
POSITION_SCHEMES: tuple[str, ...] = ("index", "offset", "diagonal")

# A checkpoint may carry default adapter options (the tiny ones do: small reference areas, the
# tiny text encoder's layer indices); explicit options passed to load_backbone override them.
CHECKPOINT_DEFAULTS_FILE = "rewardkit_backbone.json"

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------
# options
# ----------------------------------------------------------------------------------------------


def write_checkpoint_defaults(directory: Path, backbone: str, options: dict[str, Any]) -> None:
    """Write ``{"backbone": name, "options": {...}}`` next to ``model_index.json``."""
    text = json.dumps({"backbone": backbone, "options": options}, indent=2, sort_keys=True)
    (directory / CHECKPOINT_DEFAULTS_FILE).write_text(text + "\n")


def parse_options(cls: type[T], backbone: str, path: str, options: dict[str, Any]) -> T:
    """Build the options dataclass ``cls`` from checkpoint defaults overridden by ``options``.

    Raises:
        ValueError: an unknown option name (the message lists the valid ones), or a checkpoint
            defaults file written for another backbone.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for backbone {backbone!r}; valid options: {sorted(fields)}"
        )
    merged: dict[str, Any] = {}
    defaults_file = Path(path) / CHECKPOINT_DEFAULTS_FILE
    if defaults_file.is_file():
        stored = json.loads(defaults_file.read_text())
        if stored.get("backbone") != backbone:
            raise ValueError(
                f"{defaults_file} was written for backbone {stored.get('backbone')!r}, not {backbone!r}; "
                "load the checkpoint with the backbone it was made for"
            )
        merged.update({k: v for k, v in stored.get("options", {}).items() if k in fields})
    merged.update(options)
    for name, value in merged.items():
        if isinstance(value, list):  # JSON has no tuples
            merged[name] = tuple(value)
    return cls(**merged)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` → CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(name: str | None, *, option: str) -> torch.dtype | None:
    """``"float32" | "bfloat16" | "float16"`` → torch dtype; None stays None."""
    if name is None:
        return None
    if name not in _DTYPES:
        raise ValueError(f"{option} must be one of {sorted(_DTYPES)} or None, got {name!r}")
    return _DTYPES[name]


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Mixed-precision context for the transformer forward (no-op when ``dtype`` is None)."""
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield


def check_references(
    references: Sequence[Any], *, min_side: int, max_aspect: float | None = None, where: str = ""
) -> list[Any]:
    """Validate one sample's ordered reference images; return them as a list.

    Each must be an RGB ``PIL.Image.Image`` with both sides ≥ ``min_side`` pixels (and aspect
    ratio ≤ ``max_aspect`` when given).
    """
    from PIL import Image

    if isinstance(references, Image.Image):
        raise TypeError(
            f"references{where} must be a sequence of images per prompt, got a single image; "
            "wrap it in a list"
        )
    refs = list(references)
    if not refs:
        raise ValueError(
            f"references{where} is empty: multi-reference editing needs at least one reference "
            "image per prompt"
        )
    for i, img in enumerate(refs):
        if not isinstance(img, Image.Image):
            raise TypeError(f"reference {i}{where} must be a PIL.Image.Image, got {type(img).__name__}")
        if img.mode != "RGB":
            raise ValueError(
                f"reference {i}{where} has image mode {img.mode!r}; expected 'RGB' (use image.convert('RGB'))"
            )
        w, h = img.size
        if w < min_side or h < min_side:
            raise ValueError(
                f"reference {i}{where} is too small: {w}×{h} px; both sides must be at least {min_side} px "
                f"for this backbone (option min_reference_side)"
            )
        if max_aspect is not None and max(w, h) / min(w, h) > max_aspect:
            raise ValueError(
                f"reference {i}{where} has aspect ratio {max(w, h) / min(w, h):.2f} > {max_aspect}"
            )
    return refs


def timesteps(
    sigma: float | torch.Tensor, batch: int, *, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """The transformer's `(B,)` timestep input from one σ for the batch or one σ per sample.

    Per-sample σ lets a trainer draw several noise levels for one condition in a single forward
    (the condition is encoded once and the batch fills the matrix multiplies).
    """
    if isinstance(sigma, torch.Tensor) and sigma.ndim > 0:
        if sigma.shape != (batch,):
            raise ValueError(
                f"sigma must be a float or a (B,) tensor with B={batch}, got shape {tuple(sigma.shape)}"
            )
        if not bool(((sigma >= 0) & (sigma <= 1)).all()):  # NaN fails both comparisons
            raise ValueError(f"sigma must lie in [0, 1], got {sigma.tolist()}")
        return sigma.to(device=device, dtype=dtype)
    # One σ for the batch (the sampling loops' case): checked as a Python float, no tensor reduction.
    value = float(sigma)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"sigma must lie in [0, 1], got {value}")
    return torch.full((batch,), value, device=device, dtype=dtype)


def check_target_size(height: int | None, width: int | None, *, multiple_of: int) -> tuple[int, int] | None:
    """Explicit target size floored to ``multiple_of``; None when both are None."""
    if height is None and width is None:
        return None
    if height is None or width is None:
        raise ValueError(f"pass both height and width or neither, got height={height}, width={width}")
    h, w = (int(height) // multiple_of) * multiple_of, (int(width) // multiple_of) * multiple_of
    if h < multiple_of or w < multiple_of:
        raise ValueError(f"target size {height}×{width} is below the minimum {multiple_of}×{multiple_of} px")
    return h, w


# ----------------------------------------------------------------------------------------------
# reference layouts (seed 003 position schemes)
# ----------------------------------------------------------------------------------------------


def place_on_canvas(sizes: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Top-left ``(row, col)`` offsets of grids placed one by one on a growing canvas.

    The first grid sits at (0, 0). Each next one goes to the right of the canvas (row 0) or
    below it (col 0), whichever gives the canvas the smaller longer side (ties: right). This
    is the "offset" scheme of Kontext-style multi-reference Flux code.

    Example:
        >>> place_on_canvas([(4, 4), (4, 2), (2, 6)])
        [(0, 0), (0, 4), (4, 0)]
    """
    offsets: list[tuple[int, int]] = []
    canvas_h = canvas_w = 0
    for k, (h, w) in enumerate(sizes):
        if k == 0:
            offsets.append((0, 0))
            canvas_h, canvas_w = h, w
            continue
        right = (max(canvas_h, h), canvas_w + w)
        below = (canvas_h + h, max(canvas_w, w))
        if max(right) <= max(below):
            offsets.append((0, canvas_w))
            canvas_h, canvas_w = right
        else:
            offsets.append((canvas_h, 0))
            canvas_h, canvas_w = below
    return offsets


# ----------------------------------------------------------------------------------------------
# LoRA (peft through diffusers' PeftAdapterMixin)
# ----------------------------------------------------------------------------------------------

_ADAPTER = "default"
_LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' LORA_WEIGHT_NAME_SAFE


def has_lora(transformer: nn.Module) -> bool:
    """Whether a LoRA adapter is attached."""
    return _ADAPTER in (getattr(transformer, "peft_config", None) or {})


def lora_parameters(transformer: nn.Module) -> list[nn.Parameter]:
    """The LoRA parameters, in module order."""
    return [p for n, p in transformer.named_parameters() if "lora_" in n]


def _finalize_lora(transformer: nn.Module) -> None:
    """Freeze the base, make the LoRA weights float32 trainable master weights."""
    for name, param in transformer.named_parameters():
        is_lora = "lora_" in name
        if is_lora and param.dtype != torch.float32:
            param.data = param.data.float()
        param.requires_grad_(is_lora)


def add_lora(transformer: Any, *, rank: int, alpha: float | None, target_modules: Sequence[str]) -> None:
    """Attach a fresh LoRA adapter ``W + (α/r)·B·A`` (B = 0 at start, so the output is unchanged)."""
    from peft import LoraConfig

    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive int, got {rank!r}")
    if has_lora(transformer):
        raise ValueError("the backbone already has a LoRA adapter; save it, or load_adapter() to replace it")
    targets = list(target_modules)
    if not targets:
        raise ValueError("target_modules must name at least one module")
    config = LoraConfig(
        r=rank, lora_alpha=float(alpha if alpha is not None else rank), target_modules=targets
    )
    transformer.add_adapter(config, adapter_name=_ADAPTER)
    _finalize_lora(transformer)


def save_lora(transformer: Any, directory: str | Path) -> Path:
    """Write the adapter as diffusers' ``pytorch_lora_weights.safetensors`` (config in metadata)."""
    if not has_lora(transformer):
        raise ValueError(
            "the backbone has no LoRA adapter to save; call add_adapter() or load_adapter() first"
        )
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    transformer.save_lora_adapter(str(out), adapter_name=_ADAPTER, weight_name=_LORA_FILE)
    return out


def load_lora(transformer: Any, directory: str | Path) -> None:
    """Load an adapter written by :func:`save_lora` (replacing the current one)."""
    path = Path(directory)
    if not (path / _LORA_FILE).is_file():
        raise FileNotFoundError(f"no adapter in {str(path)!r}: expected {_LORA_FILE}")
    if has_lora(transformer):
        transformer.delete_adapters(_ADAPTER)
    transformer.load_lora_adapter(
        str(path), prefix=None, adapter_name=_ADAPTER, weight_name=_LORA_FILE, use_safetensors=True
    )
    _finalize_lora(transformer)


@contextlib.contextmanager
def adapter_disabled(transformer: Any, disabled: bool) -> Iterator[None]:
    """Run with the LoRA adapter switched off (the reference policy) when ``disabled``."""
    if not disabled or not has_lora(transformer):
        yield
        return
    transformer.disable_adapters()
    try:
        yield
    finally:
        transformer.enable_adapters()
