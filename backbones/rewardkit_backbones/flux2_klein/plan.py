"""The memory planner's view of FLUX.2 [klein]: shipped configs, meta build, forward inputs."""

from collections.abc import Mapping
from typing import Any

import torch

from rewardkit.planning.model import PlanModel, PlanShape, count_parameters
from rewardkit_backbones import _plan
from rewardkit_backbones.flux2_klein.adapter import NAME, Flux2Klein
from rewardkit_backbones.flux2_klein.positions import reference_ids

__all__ = ["VARIANTS", "plan"]

#: Variant names: the shipped config folders and the tiny-checkpoint config.
VARIANTS: tuple[str, ...] = ("klein-4b", "klein-9b", "tiny")
_DEFAULT = "klein-4b"
_PACKAGE = "rewardkit_backbones.flux2_klein"
# The adapter pads every prompt to max_sequence_length (512) text tokens.
_TEXT_TOKENS = 512


def _text_encoder_params(config: dict[str, Any]) -> int:
    """Qwen3 from the published config (transformers 5 names the RoPE base ``rope_parameters``)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(**_plan.config_kwargs(Qwen3Config, config))
    with torch.device("meta"):
        model = Qwen3ForCausalLM(cfg)
    return count_parameters(model)


def _forward_kwargs(multiple_of: int, in_channels: int, text_dim: int):  # type: ignore[no-untyped-def]
    """The adapter's ``_forward`` inputs: ``[x; r_0 …]`` tokens with their ``(T, H, W, L)`` ids."""

    def build(shape: PlanShape, device: torch.device, dtype: torch.dtype) -> Mapping[str, Any]:
        m = multiple_of
        ref = (shape.reference_size // m, shape.reference_size // m)
        img_ids = reference_ids((shape.height // m, shape.width // m), [ref] * shape.references)
        t = shape.text_tokens
        txt_ids = torch.zeros(t, 4, dtype=torch.int64)
        txt_ids[:, 3] = torch.arange(t)
        b = shape.batch
        return {
            "hidden_states": torch.randn(b, img_ids.shape[0], in_channels, device=device, dtype=dtype),
            "timestep": torch.full((b,), 0.5, device=device, dtype=dtype),
            "guidance": None,
            "encoder_hidden_states": torch.randn(b, t, text_dim, device=device, dtype=dtype),
            "txt_ids": txt_ids.unsqueeze(0).to(device),
            "img_ids": img_ids.unsqueeze(0).to(device),
            "return_dict": False,
        }

    return build


def plan(variant: str | None = None, *, device: str | torch.device = "meta") -> PlanModel:
    """Build FLUX.2 [klein] ``variant`` for the memory planner.

    Args:
        variant: ``"klein-4b"`` (default) or ``"klein-9b"`` (the published configs shipped in
            ``configs/``), or ``"tiny"`` (the tiny-checkpoint config).
        device: where the transformer is built; ``"meta"`` allocates no weights. The text
            encoder and VAE are always built on ``meta`` (only their parameter counts are used).

    Returns:
        The :class:`~rewardkit.planning.model.PlanModel`.
    """
    from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel

    name = _DEFAULT if variant is None else variant
    if name not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)} for {NAME}, got {variant!r}")
    if name == "tiny":
        from rewardkit_backbones.flux2_klein import tiny

        t_config, v_config, text_params = _plan.tiny_components(tiny)
        text_tokens = 96  # TINY_OPTIONS' max_sequence_length
    else:
        t_config = _plan.load_config(_PACKAGE, name, "transformer.json")
        v_config = _plan.load_config(_PACKAGE, name, "vae.json")
        text_params = _text_encoder_params(_plan.load_config(_PACKAGE, name, "text_encoder.json"))
        text_tokens = _TEXT_TOKENS
    transformer = _plan.build_module(Flux2Transformer2DModel, t_config, device)
    vae = _plan.build_module(AutoencoderKLFlux2, v_config, "meta")
    # Pixels per token side: the VAE's 2**(blocks - 1) times the 2×2 patchify.
    multiple_of = 2 ** (len(vae.config.block_out_channels) - 1) * int(vae.config.patch_size[0])
    cfg = transformer.config
    return PlanModel(
        backbone=NAME,
        variant=name,
        transformer=transformer,
        text_encoder_params=text_params,
        vae_params=count_parameters(vae),
        lora_target_modules=tuple(Flux2Klein.lora_target_modules),
        forward_kwargs=_forward_kwargs(multiple_of, int(cfg.in_channels), int(cfg.joint_attention_dim)),
        multiple_of=multiple_of,
        default_text_tokens=lambda references: text_tokens,
    )
