r"""FLUX.2 [klein] adapter (diffusers ``Flux2KleinPipeline`` components).

Conditioning (docs: Backbones), for a prompt and references $r_0 \dots r_{n-1}$:

* **Text.** Qwen3 chat template (``add_generation_prompt``, ``enable_thinking=False``) padded to
  ``max_sequence_length`` tokens; the hidden states of layers ``text_encoder_out_layers``
  ((9, 18, 27) for the 9B model) are concatenated along channels. Text ids
  ``(T, H, W, L) = (0, 0, 0, l)``.
* **Target.** ``(H/16)·(W/16)`` tokens of 128 channels with ids ``(0, h, w, 0)`` (not centred).
* **References.** Each $r_i$ is resized down to area ``reference_area`` only if larger (aspect
  kept), floored to multiples of 16 by a centre crop, VAE-encoded (posterior mode),
  2×2-patchified, batch-norm normalised $(z - \mu_{bn})/\sqrt{\sigma^2_{bn} + \epsilon}$ and
  packed; the transformer sees $[x_{target}; r_0; \dots]$ and its output is sliced to the
  target. Position ids (scheme ``"index"``, the model's own): ``(10 + 10 i, h, w, 0)``.
  ``"offset"``/``"diagonal"`` (seed 003) put every reference at ``T = 10`` and move its rows/cols
  (see :func:`reference_ids`).
* References share the target's σ embedding (no ``zero_cond_t``); ``guidance=None`` in every
  forward (klein base has no guidance embedding).
* **Guidance.** Plain CFG with the negative prompt (``""`` by default in the pipeline):
  $v = v_\varnothing + w\,(v_c - v_\varnothing)$.
* **Schedule.** Exponential time shift with FLUX.2's empirical $\mu(L, N)$; no terminal stretch
  unless the checkpoint's scheduler config sets one.
* **Target size.** Explicit, else ``resolution × resolution`` (no aspect auto-resize).
"""

from typing import Any

from rewardkit.backbone import BackbonePlugin
from rewardkit.core.schedules import flux2_empirical_mu
from rewardkit_backbones.flux2_klein.adapter import NAME, Flux2Klein, Flux2KleinOptions, load
from rewardkit_backbones.flux2_klein.plan import plan
from rewardkit_backbones.flux2_klein.positions import reference_ids
from rewardkit_backbones.flux2_klein.tiny import TINY_OPTIONS, make_tiny_checkpoint

__all__ = [
    "NAME",
    "PLUGIN",
    "TINY_OPTIONS",
    "Flux2Klein",
    "Flux2KleinOptions",
    "load",
    "make_tiny_checkpoint",
    "reference_ids",
]

#: Recipe settings for this backbone: LoRA rank 32 in both stages; SFT for 5 epochs on the grid
#: of its 50-step sampling schedule at 512² (μ = ``flux2_empirical_mu(1024, 50)`` ≈ 1.70) instead
#: of DiffSynth's extrapolated μ ≈ −3.51, which puts most timesteps at very low noise.
RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "sft": {
        "model": {"lora_rank": 32},
        "train": {
            "epochs": 5,
            "timestep_mu": round(flux2_empirical_mu(1024, 50), 4),
            "timestep_shift_terminal": None,
        },
    },
    "grpo": {"model": {"lora_rank": 32}},
}

PLUGIN = BackbonePlugin(
    name=NAME,
    load=load,
    make_tiny_checkpoint=make_tiny_checkpoint,
    options=Flux2KleinOptions,
    recipe_defaults=RECIPE_DEFAULTS,
    plan=plan,
)
