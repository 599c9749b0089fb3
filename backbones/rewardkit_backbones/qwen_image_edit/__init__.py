r"""Qwen-Image-Edit-2511 adapter (diffusers ``QwenImageEditPlusPipeline`` components).

Conditioning (docs: Backbones), for a prompt and references $r_1 \dots r_n$:

* **References → VAE tokens.** Each $r_j$ is resized to area ``vae_reference_area`` keeping its
  aspect ratio (sides rounded to multiples of 32), VAE-encoded (posterior mode), normalised
  $(z - \mu_{lat})/\sigma_{lat}$ and 2×2-packed. The transformer sees
  $[x_{target}; r_1; \dots; r_n]$ along the sequence axis; its output is sliced back to the
  $L$ target tokens.
* **References → text encoder.** Each $r_j$ is also resized to area ``text_reference_area``
  and put in the Qwen2.5-VL prompt as ``"Picture j: <|vision_start|><|image_pad|><|vision_end|>"``
  before the instruction, inside the edit system template; the last hidden layer is used and
  the first 64 template tokens are dropped (the pipeline's ``encode_prompt``).
* **Positions.** ``img_shapes = [(1, H/16, W/16), (1, h_1/16, w_1/16), …]``; 3-axis RoPE with
  the frame coordinate = image index (target 0, reference j → j) and centred rows/columns
  (position scheme ``"index"``, the model's own). ``"offset"`` and ``"diagonal"`` (seed 003)
  give every reference frame 1 and move its rows/columns instead (see :func:`image_positions`).
* **``zero_cond_t``.** The checkpoint's transformer embeds the timestep as ``[σ, 0]`` and
  modulates reference tokens with the $t = 0$ embedding (handled inside the diffusers model).
* **Guidance.** True CFG with a negative prompt:
  $v = \tilde v\,\lVert v_c\rVert / \lVert\tilde v\rVert$ per token, with
  $\tilde v = v_\varnothing + w\,(v_c - v_\varnothing)$.
* **Schedule.** Exponential time shift with $\mu = mL + b$ from the checkpoint's scheduler
  config (2511: the line through (256, 0.5) and (8192, 0.9)) and ``shift_terminal`` 0.02.
* **Target size.** Explicit, or with ``auto_resize`` the area ``resolution²`` with the aspect
  ratio of the *last* reference, floored to multiples of 16; else ``resolution × resolution``.
"""

from typing import Any

from rewardkit.backbone import BackbonePlugin
from rewardkit_backbones.qwen_image_edit.adapter import NAME, QwenImageEdit, QwenImageEditOptions, load
from rewardkit_backbones.qwen_image_edit.plan import plan
from rewardkit_backbones.qwen_image_edit.positions import image_positions, rope_frequencies
from rewardkit_backbones.qwen_image_edit.tiny import TINY_OPTIONS, make_tiny_checkpoint

__all__ = [
    "NAME",
    "PLUGIN",
    "TINY_OPTIONS",
    "QwenImageEdit",
    "QwenImageEditOptions",
    "image_positions",
    "load",
    "make_tiny_checkpoint",
    "rope_frequencies",
]

#: DyRef's recipe settings for this backbone: SFT LoRA rank 32 for 6 epochs on Qwen-Image's
#: timestep grid (μ = 0.8, terminal 0.02), GRPO LoRA rank 64; LoRA targets are the adapter's own.
RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "sft": {
        "model": {"lora_rank": 32},
        "train": {"epochs": 6, "timestep_mu": 0.8, "timestep_shift_terminal": 0.02},
    },
    "grpo": {"model": {"lora_rank": 64}},
}

PLUGIN = BackbonePlugin(
    name=NAME,
    load=load,
    make_tiny_checkpoint=make_tiny_checkpoint,
    options=QwenImageEditOptions,
    recipe_defaults=RECIPE_DEFAULTS,
    plan=plan,
)
