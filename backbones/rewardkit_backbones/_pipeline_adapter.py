"""What both adapters do the same way around a diffusers pipeline: loading, freezing, LoRA.

A backbone adapter subclasses [`PipelineAdapter`][rewardkit_backbones._pipeline_adapter.PipelineAdapter]
and adds its conditioning, velocity and latent packing; the base class owns the pipeline's
components, the device and mixed-precision settings, the scheduler check and the LoRA adapter
(the one ``lora_target_modules`` list serves ``add_adapter`` and both recipes).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from rewardkit.backbone import Condition
from rewardkit_backbones import _common
from rewardkit_backbones._common import POSITION_SCHEMES, PositionScheme

__all__ = ["AdapterOptions", "PipelineAdapter", "load_pipeline"]

A = TypeVar("A", bound="PipelineAdapter")


@dataclass(frozen=True)
class AdapterOptions:
    """The options every pipeline adapter takes (each adapter's options extend them).

    Attributes:
        device: where to run (None: CUDA if available, else CPU).
        dtype: dtype of the loaded weights: ``"float32"``, ``"bfloat16"`` (recommended for
            real weights on GPU) or ``"float16"``. LoRA weights are always float32.
        autocast_dtype: mixed-precision dtype of the transformer forward (rollout and training
            alike, so the old and new log-probs match), or None for none.
        resolution: target side when the size is not given.
        position_scheme: ``"index"`` (the model's own), ``"offset"`` or ``"diagonal"``.
        gradient_checkpointing: checkpoint transformer blocks in the training forward.
        adapter: directory of a LoRA adapter to load at start (e.g. the SFT adapter).
        text_encoder_device: where the text encoder lives and runs (None: with the transformer).
            ``"cpu"`` keeps a large one (Qwen2.5-VL 7B: 16.6 GB in bf16) off the GPU; the
            recipes encode every prompt once, and the embeddings move to ``device``.
        defer_transformer_placement: leave the transformer in CPU memory at load; the caller
            places it on ``device``. The recipes set it under FSDP, where ``fully_shard`` moves
            one block at a time and keeps only this process's shard of it, so the whole base
            never sits on one GPU.
    """

    device: str | None = None
    dtype: str = "float32"
    autocast_dtype: str | None = "bfloat16"
    resolution: int = 512
    position_scheme: PositionScheme = "index"
    gradient_checkpointing: bool = False
    adapter: str | None = None
    text_encoder_device: str | None = None
    defer_transformer_placement: bool = False

    def __post_init__(self) -> None:
        _common.resolve_dtype(self.dtype, option="dtype")
        _common.resolve_dtype(self.autocast_dtype, option="autocast_dtype")
        self._check_positive_ints("resolution")
        if self.position_scheme not in POSITION_SCHEMES:
            raise ValueError(
                f"position_scheme must be one of {POSITION_SCHEMES}, got {self.position_scheme!r}"
            )

    def _check_positive_ints(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")


class PipelineAdapter:
    """Base of the diffusers-pipeline adapters (see the module docstring).

    Subclasses set ``name``, ``family`` (named in errors), ``lora_target_modules``; implement
    ``_encode_one`` (one prompt and its references → a ``Condition``), ``_forward`` (one
    transformer call on ``[x; references]``) and ``_guide`` (the model's classifier-free
    guidance); and may override ``_check_pipeline`` (refuse an unsupported checkpoint before
    anything moves) and ``_prepare_transformer`` (patch the transformer once on its device).
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
        if options.defer_transformer_placement:
            for name, component in pipe.components.items():
                if isinstance(component, nn.Module) and name != "transformer":
                    component.to(self._device)
        else:
            pipe.to(self._device)
        self._text_device = self._device
        if options.text_encoder_device is not None:
            self._text_device = torch.device(options.text_encoder_device)
            pipe.text_encoder.to(self._text_device)
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

    @torch.no_grad()
    def encode_condition(
        self,
        prompts: Sequence[str],
        references: Sequence[Sequence[Any]],
        *,
        height: int | None = None,
        width: int | None = None,
        negative_prompt: str | None = None,
    ) -> list[Condition]:
        """Encode (prompt, ordered references) pairs (see ``Backbone.encode_condition``)."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings (one per sample), got a str")
        if len(prompts) != len(references):
            raise ValueError(f"got {len(prompts)} prompts but {len(references)} reference lists")
        conditions = []
        for b, (prompt, refs) in enumerate(zip(prompts, references, strict=True)):
            where = f" of sample {b}"
            if not isinstance(prompt, str):
                raise TypeError(f"prompt{where} must be a str, got {type(prompt).__name__}")
            conditions.append(
                self._encode_one(
                    prompt, refs, height=height, width=width, negative_prompt=negative_prompt, where=where
                )
            )
        return conditions

    def _encode_one(
        self,
        prompt: str,
        references: Sequence[Any],
        *,
        height: int | None,
        width: int | None,
        negative_prompt: str | None,
        where: str,
    ) -> Condition:
        """One prompt (a str) and its references → a ``Condition``; ``where`` names the sample in errors."""
        raise NotImplementedError

    def _forward(self, hidden: Tensor, timestep: Tensor, condition: Condition, *, negative: bool) -> Tensor:
        """One transformer call on ``hidden = [x; references]`` with the (negative) prompt."""
        raise NotImplementedError

    def _guide(self, v: Tensor, v_neg: Tensor, guidance_scale: float) -> Tensor:
        """Combine the conditional and negative velocities (the model's CFG rule)."""
        raise NotImplementedError

    def velocity(
        self,
        latents: Tensor,
        sigma: float | Tensor,
        condition: Condition,
        *,
        guidance_scale: float = 1.0,
        adapter: bool = True,
    ) -> Tensor:
        """Transformer velocity on ``[x; references]`` sliced to the target; guided when w > 1."""
        if latents.ndim != 3 or latents.shape[1] != condition.image_seq_len:
            raise ValueError(
                f"latents must be (B, L={condition.image_seq_len}, D) for a "
                f"{condition.height}×{condition.width} target, got {tuple(latents.shape)}"
            )
        if guidance_scale > 1.0 and not condition.has_negative:
            raise ValueError("guidance_scale > 1 needs a condition encoded with negative_prompt=...")
        b, length = latents.shape[:2]
        dtype = self.transformer.dtype
        refs = condition.reference_latents.to(self._device).expand(b, -1, -1)
        hidden = torch.cat([latents.to(self._device), refs], dim=1).to(dtype)
        timestep = _common.timesteps(sigma, b, device=self._device, dtype=dtype)
        with (
            _common.autocast(self._device, self._autocast),
            _common.adapter_disabled(self.transformer, not adapter),
        ):
            v = self._forward(hidden, timestep, condition, negative=False)[:, :length].float()
            if guidance_scale <= 1.0:
                return v
            v_neg = self._forward(hidden, timestep, condition, negative=True)[:, :length].float()
        return self._guide(v, v_neg, guidance_scale)

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
