"""What both adapters do the same way around a diffusers pipeline: loading, freezing, LoRA.

A backbone adapter subclasses [`PipelineAdapter`][rewardkit_backbones._pipeline_adapter.PipelineAdapter]
and adds its conditioning, velocity and latent packing; the base class owns the pipeline's
components, the device and mixed-precision settings, the scheduler check and the LoRA adapter
(the one ``lora_target_modules`` list serves ``add_adapter`` and both recipes).
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from rewardkit_backbones import _common

__all__ = ["PipelineAdapter", "load_pipeline"]

A = TypeVar("A", bound="PipelineAdapter")


class PipelineAdapter:
    """Base of the diffusers-pipeline adapters (see the module docstring).

    Subclasses set ``name``, ``family`` (named in errors), ``lora_target_modules`` and may
    override ``_check_pipeline`` (refuse an unsupported checkpoint before anything moves) and
    ``_prepare_transformer`` (patch the transformer once it is on its device).
    """

    name: ClassVar[str]
    family: ClassVar[str]
    lora_target_modules: ClassVar[tuple[str, ...]]

    def __init__(self, pipe: Any, options: Any) -> None:
        self.pipe = pipe
        self.options = options
        self.transformer: Any = pipe.transformer
        self.vae: Any = pipe.vae
        self._device = _common.resolve_device(options.device)
        self._autocast = _common.resolve_dtype(options.autocast_dtype, option="autocast_dtype")
        self._check_pipeline(pipe)
        config = dict(pipe.scheduler.config)
        if (
            not config.get("use_dynamic_shifting")
            or config.get("time_shift_type", "exponential") != "exponential"
        ):
            raise ValueError(
                "the checkpoint's scheduler must use dynamic exponential shifting "
                f"(use_dynamic_shifting=true, time_shift_type='exponential') as {self.family} does; "
                f"got {config}"
            )
        pipe.to(self._device)
        for module in (pipe.transformer, pipe.vae, pipe.text_encoder):
            module.eval()
            module.requires_grad_(False)
        self.vae_scale_factor: int = pipe.vae_scale_factor
        self.multiple_of = self.vae_scale_factor * 2
        self._prepare_transformer()
        self.set_gradient_checkpointing(options.gradient_checkpointing)
        if options.adapter is not None:
            self.load_adapter(options.adapter)

    def _check_pipeline(self, pipe: Any) -> None:
        """Raise on a checkpoint this adapter cannot drive (default: accept)."""

    def _prepare_transformer(self) -> None:
        """Adjust the transformer after it is moved to its device (default: nothing)."""

    @property
    def device(self) -> torch.device:
        """Device of the transformer."""
        return self._device

    def add_adapter(
        self, *, rank: int, alpha: float | None = None, target_modules: Sequence[str] | None = None
    ) -> None:
        """Attach a fresh LoRA adapter (rank r, scale α/r; default: ``lora_target_modules``)."""
        targets = self.lora_target_modules if target_modules is None else tuple(target_modules)
        _common.add_lora(self.transformer, rank=rank, alpha=alpha, target_modules=targets)

    def adapter_parameters(self) -> list[nn.Parameter]:
        """Trainable LoRA parameters (float32)."""
        return _common.lora_parameters(self.transformer)

    def save_adapter(self, directory: str | Path) -> Path:
        """Save the adapter in diffusers' LoRA format."""
        return _common.save_lora(self.transformer, directory)

    def load_adapter(self, directory: str | Path) -> None:
        """Load an adapter saved by :meth:`save_adapter`, replacing the current one."""
        _common.load_lora(self.transformer, directory)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Switch activation checkpointing of the transformer blocks."""
        if enabled:
            self.transformer.enable_gradient_checkpointing()
        else:
            self.transformer.disable_gradient_checkpointing()


def load_pipeline(
    adapter: type[A],
    options_type: type[Any],
    pipeline: str,
    path: str,
    options: dict[str, Any],
    *,
    layout: str,
) -> A:
    """Load a diffusers pipeline folder (or hub id) with ``from_pretrained`` and wrap it.

    Args:
        adapter: the adapter class to build.
        options_type: its options dataclass (``options`` are checked against it).
        pipeline: the diffusers pipeline class name, e.g. ``"QwenImageEditPlusPipeline"``.
        path: local pipeline directory or hub id.
        options: the adapter options given to ``load_backbone``.
        layout: the sub-folders expected, named in the error for a folder that is not a pipeline.
    """
    import diffusers

    opts = _common.parse_options(options_type, adapter.name, path, options)
    local = Path(path)
    if local.is_dir() and not (local / "model_index.json").is_file():
        raise FileNotFoundError(
            f"{path!r} is not a diffusers pipeline directory (no model_index.json); expected the "
            f"{adapter.family} layout with {layout}"
        )
    dtype = _common.resolve_dtype(opts.dtype, option="dtype")
    try:
        pipe = getattr(diffusers, pipeline).from_pretrained(path, dtype=dtype)
    except OSError as err:
        raise OSError(f"could not load {adapter.name!r} weights from {path!r}: {err}") from err
    return adapter(pipe, opts)
