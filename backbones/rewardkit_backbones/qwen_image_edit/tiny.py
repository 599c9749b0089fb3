"""A tiny random-weight Qwen-Image-Edit-2511 pipeline (the real classes) for tests and CPU runs."""

from pathlib import Path
from typing import Any

import torch

from rewardkit_backbones import _common
from rewardkit_backbones.qwen_image_edit.adapter import NAME

__all__ = [
    "TINY_OPTIONS",
    "TINY_TRANSFORMER_CONFIG",
    "TINY_VAE_CONFIG",
    "make_tiny_checkpoint",
    "tiny_text_encoder",
]

# Tiny-checkpoint defaults: small reference areas keep CPU tests fast (the pipeline's defaults
# resize every reference to 1024² for the VAE, 30 s per call with the tiny VAE).
TINY_OPTIONS: dict[str, Any] = {
    "resolution": 64,
    "vae_reference_area": 64 * 64,
    "text_reference_area": 56 * 56,
    "min_reference_side": 16,
    "autocast_dtype": None,
}

#: The tiny transformer's constructor arguments (also the planner's ``"tiny"`` variant).
TINY_TRANSFORMER_CONFIG: dict[str, Any] = {
    "patch_size": 2, "in_channels": 16, "out_channels": 4, "num_layers": 2, "attention_head_dim": 16,
    "num_attention_heads": 3, "joint_attention_dim": 16, "guidance_embeds": False,
    "axes_dims_rope": (8, 4, 4), "zero_cond_t": True,
}  # fmt: skip

#: The tiny VAE's constructor arguments; non-trivial latent statistics, so a missing
#: (de)normalisation shows up in the tests.
TINY_VAE_CONFIG: dict[str, Any] = {
    "base_dim": 8, "z_dim": 4, "dim_mult": [1, 1, 2], "num_res_blocks": 1,
    "temperal_downsample": [False, True], "latents_mean": [0.1, -0.2, 0.05, 0.0],
    "latents_std": [0.8, 1.2, 0.9, 1.1],
}  # fmt: skip


def tiny_text_encoder(tok: Any) -> Any:
    """The tiny ``Qwen2_5_VLForConditionalGeneration`` for tokenizer ``tok`` (random weights)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tid = tok.convert_tokens_to_ids
    text_config = {
        "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "num_key_value_heads": 2, "vocab_size": len(tok), "rope_theta": 1e6, "bos_token_id": None,
        "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
        "eos_token_id": tid("<|im_end|>"), "pad_token_id": tok.pad_token_id,
    }  # fmt: skip
    vision_config = {
        "depth": 2,
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_heads": 2,
        "out_hidden_size": 16,
    }
    return Qwen2_5_VLForConditionalGeneration(
        Qwen2_5_VLConfig(
            text_config=text_config, vision_config=vision_config, image_token_id=tid("<|image_pad|>"),
            video_token_id=tid("<|video_pad|>"), vision_start_token_id=tid("<|vision_start|>"),
            vision_end_token_id=tid("<|vision_end|>"),
        )
    )  # fmt: skip


def make_tiny_checkpoint(directory: Path, *, tokenizer: Any = None) -> Path:
    """Write a tiny random-weight Qwen-Image-Edit-2511-style pipeline to ``directory``.

    Same classes as the real checkpoint (``QwenImageTransformer2DModel`` with
    ``zero_cond_t=True``, ``AutoencoderKLQwenImage``, ``Qwen2_5_VLForConditionalGeneration``,
    ``Qwen2VLProcessor``, the 2511 scheduler config) with tiny sizes, deterministic weights
    (seed 0, global RNG untouched) and a byte-level tokenizer built in code, or ``tokenizer``
    (e.g. from ``train_bpe_tokenizer``; the text encoder's vocabulary follows its size).
    """
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPlusPipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    from rewardkit_backbones._tokenizer import make_byte_tokenizer

    tok = make_byte_tokenizer() if tokenizer is None else tokenizer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        transformer = QwenImageTransformer2DModel(**TINY_TRANSFORMER_CONFIG)
        vae = AutoencoderKLQwenImage(**TINY_VAE_CONFIG)
        text_encoder = tiny_text_encoder(tok)
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(), tokenizer=tok, video_processor=Qwen2VLVideoProcessor()
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256, max_image_seq_len=8192, base_shift=0.5, max_shift=0.9, shift_terminal=0.02,
        time_shift_type="exponential", use_dynamic_shifting=True, shift=1.0,
    )  # fmt: skip
    pipe = QwenImageEditPlusPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tok, processor=processor,
        transformer=transformer,
    )  # fmt: skip
    pipe.save_pretrained(str(directory))
    _common.write_checkpoint_defaults(directory, NAME, TINY_OPTIONS)
    return directory
