"""The memory planner's view of Qwen-Image-Edit-2511: shipped configs, meta build, forward inputs."""

from collections.abc import Mapping
from typing import Any

import torch

from rewardkit.planning.model import PlanModel, PlanShape, count_parameters
from rewardkit_backbones import _plan
from rewardkit_backbones.qwen_image_edit.adapter import NAME, QwenImageEdit

__all__ = ["VARIANTS", "plan"]

#: Variant name → shipped config folder (``None``: the tiny-checkpoint config in code).
VARIANTS: dict[str, str | None] = {"2511": "", "tiny": None}
_DEFAULT = "2511"
_PACKAGE = "rewardkit_backbones.qwen_image_edit"
# The text encoder sees each reference at ``text_reference_area`` = 384²: 28-px merged patches give
# (384/28)² ≈ 188 vision tokens plus "Picture j: " and the vision start/end markers.
_TEXT_TOKENS_PER_REFERENCE = 195
_PROMPT_TOKENS = 64


def _text_encoder_params(config: dict[str, Any]) -> int:
    """Qwen2.5-VL from the flat published config (transformers 5 nests the LM keys)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    top = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    skip = {"vision_config", "architectures", "transformers_version", "torch_dtype", "model_type", *top}
    text_config = {k: v for k, v in config.items() if k not in skip}
    cfg = Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=config["vision_config"],
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        **{k: config[k] for k in top if k in config},
    )
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(cfg)
    return count_parameters(model)


def _forward_kwargs(multiple_of: int, in_channels: int, text_dim: int):  # type: ignore[no-untyped-def]
    """The adapter's ``_forward`` inputs: ``[x; r_1 … r_n]`` tokens, per-image ``img_shapes``."""

    def build(shape: PlanShape, device: torch.device, dtype: torch.dtype) -> Mapping[str, Any]:
        m = multiple_of
        grid = [(1, shape.height // m, shape.width // m)]
        grid += [(1, shape.reference_size // m, shape.reference_size // m)] * shape.references
        tokens = sum(h * w for _, h, w in grid)
        b = shape.batch
        return {
            "hidden_states": torch.randn(b, tokens, in_channels, device=device, dtype=dtype),
            "timestep": torch.full((b,), 0.5, device=device, dtype=dtype),
            "guidance": None,
            "encoder_hidden_states": torch.randn(b, shape.text_tokens, text_dim, device=device, dtype=dtype),
            "encoder_hidden_states_mask": None,
            "img_shapes": [grid] * b,
            "return_dict": False,
        }

    return build


def plan(variant: str | None = None, *, device: str | torch.device = "meta") -> PlanModel:
    """Build Qwen-Image-Edit-``variant`` for the memory planner.

    Args:
        variant: ``"2511"`` (default; the published Qwen-Image-Edit-2511 configs shipped in
            ``configs/``) or ``"tiny"`` (the tiny-checkpoint config).
        device: where the transformer is built; ``"meta"`` allocates no weights. The text
            encoder and VAE are always built on ``meta`` (only their parameter counts are used).

    Returns:
        The :class:`~rewardkit.planning.model.PlanModel`.
    """
    from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel

    name = _DEFAULT if variant is None else variant
    if name not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)} for {NAME}, got {variant!r}")
    if name == "tiny":
        from rewardkit_backbones.qwen_image_edit import tiny

        t_config, v_config, text_params = _plan.tiny_components(tiny)
    else:
        t_config = _plan.load_config(_PACKAGE, "transformer.json")
        v_config = _plan.load_config(_PACKAGE, "vae.json")
        text_params = _text_encoder_params(_plan.load_config(_PACKAGE, "text_encoder.json"))
    transformer = _plan.build_module(QwenImageTransformer2DModel, t_config, device)
    vae = _plan.build_module(AutoencoderKLQwenImage, v_config, "meta")
    # Pixels per token side: the VAE's 2**len(temperal_downsample) times the 2×2 packing.
    multiple_of = 2 ** len(vae.config.temperal_downsample) * int(transformer.config.patch_size)
    cfg = transformer.config
    return PlanModel(
        backbone=NAME,
        variant=name,
        transformer=transformer,
        text_encoder_params=text_params,
        vae_params=count_parameters(vae),
        lora_target_modules=tuple(QwenImageEdit.lora_target_modules),
        forward_kwargs=_forward_kwargs(multiple_of, int(cfg.in_channels), int(cfg.joint_attention_dim)),
        multiple_of=multiple_of,
        default_text_tokens=lambda references: _PROMPT_TOKENS + _TEXT_TOKENS_PER_REFERENCE * references,
    )
