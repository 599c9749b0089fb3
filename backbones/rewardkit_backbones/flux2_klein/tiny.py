"""A tiny random-weight FLUX.2 [klein] pipeline (the real classes) for tests and CPU runs."""

from pathlib import Path
from typing import Any

import torch

from rewardkit_backbones import _common
from rewardkit_backbones.flux2_klein.adapter import NAME

__all__ = [
    "TINY_OPTIONS",
    "TINY_TRANSFORMER_CONFIG",
    "TINY_VAE_CONFIG",
    "make_tiny_checkpoint",
    "tiny_text_encoder",
]


# Tiny-checkpoint defaults: the tiny Qwen3 has 2 layers, prompts are short.
TINY_OPTIONS: dict[str, Any] = {
    "resolution": 64,
    "reference_area": 64 * 64,
    "max_sequence_length": 96,
    "text_encoder_out_layers": [1, 2],
    "autocast_dtype": None,
}

#: The tiny transformer's constructor arguments (also the planner's ``"tiny"`` variant).
TINY_TRANSFORMER_CONFIG: dict[str, Any] = {
    "patch_size": 1, "in_channels": 8, "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16,
    "num_attention_heads": 2, "joint_attention_dim": 32, "timestep_guidance_channels": 256,
    "axes_dims_rope": [4, 4, 4, 4], "guidance_embeds": False,
}  # fmt: skip

#: The tiny VAE's constructor arguments (scale factor 4).
TINY_VAE_CONFIG: dict[str, Any] = {
    "sample_size": 32, "in_channels": 3, "out_channels": 3, "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3, "block_out_channels": (4, 4, 4), "layers_per_block": 1,
    "latent_channels": 2, "norm_num_groups": 1, "use_quant_conv": False, "use_post_quant_conv": False,
}  # fmt: skip


def tiny_text_encoder(tok: Any) -> Any:
    """The tiny ``Qwen3ForCausalLM`` for tokenizer ``tok`` (random weights)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tid = tok.convert_tokens_to_ids
    return Qwen3ForCausalLM(
        Qwen3Config(
            intermediate_size=16, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, head_dim=8, vocab_size=len(tok), max_position_embeddings=512,
            bos_token_id=None, eos_token_id=tid("<|im_end|>"), pad_token_id=tok.pad_token_id,
        )
    )  # fmt: skip


def make_tiny_checkpoint(directory: Path) -> Path:
    """Write a tiny random-weight FLUX.2 [klein]-style pipeline to ``directory``.

    Same classes as the real checkpoint (``Flux2Transformer2DModel`` without guidance embedding,
    ``AutoencoderKLFlux2``, ``Qwen3ForCausalLM``) with tiny sizes (VAE scale factor 4, so a
    64×64 image is 8×8 = 64 tokens), deterministic weights (seed 0, global RNG untouched),
    non-trivial latent batch-norm statistics, and a byte-level tokenizer built in code.
    """
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )

    from rewardkit_backbones._tokenizer import make_byte_tokenizer

    tok = make_byte_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        transformer = Flux2Transformer2DModel(**TINY_TRANSFORMER_CONFIG)
        text_encoder = tiny_text_encoder(tok)
        vae = AutoencoderKLFlux2(**TINY_VAE_CONFIG)
        # Non-trivial latent statistics, so a missing (de)normalisation shows up in the tests.
        vae.bn.running_mean.copy_(0.1 * torch.randn_like(vae.bn.running_mean))
        vae.bn.running_var.copy_(0.5 + torch.rand_like(vae.bn.running_var))
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="exponential")
    pipe = Flux2KleinPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tok, transformer=transformer
    )
    pipe.save_pretrained(str(directory))
    _common.write_checkpoint_defaults(directory, NAME, TINY_OPTIONS)
    return directory
