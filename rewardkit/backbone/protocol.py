r"""The contract between rewardkit and an image backbone (Qwen-Image-Edit-2511, FLUX.2 [klein], ...).

Trainers, rollouts and the evaluator see a backbone only through :class:`Backbone`, a typed
``Protocol``: nothing here imports diffusers or transformers, and adapters never inherit from a
rewardkit class (they only have to provide these methods). Adapters live outside the core, in
the ``rewardkit_backbones`` package, and are found through entry points
(:mod:`rewardkit.backbone.registry`).

Conventions (docs: The math, Conventions): a latent is a packed token sequence ``(B, L, D)`` (``L`` target
tokens of ``D`` channels, e.g. ``(B, 1024, 64)`` for Qwen at 512²), σ ∈ [0, 1] is the noise level,
``x_σ = (1−σ)·x0 + σ·ε`` and the model predicts the velocity ``v = ε − x0``. Images are float
tensors ``(B, 3, H, W)`` in ``[0, 1]``; reference images given to
:meth:`Backbone.encode_condition` are RGB ``PIL.Image.Image`` objects.

Dimension names used in shapes: ``B`` batch, ``G`` group size, ``K`` trained steps, ``L``
target tokens, ``L_ref`` reference tokens (all references), ``D`` latent channels per token,
``S`` text tokens, ``E`` text embedding width, ``N`` sampling steps.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import Tensor

if TYPE_CHECKING:
    from rewardkit.planning.model import PlanModel

__all__ = ["Backbone", "BackbonePlugin", "Condition", "ReferenceImage"]

ReferenceImage = Any
"""A reference image: an RGB ``PIL.Image.Image`` (typed loosely so the core needs no Pillow)."""


@dataclass(frozen=True, eq=False)
class Condition:
    r"""Everything the velocity forward needs besides the noisy latent, for one prompt.

    Built once per (prompt, ordered references) by :meth:`Backbone.encode_condition` and shared
    by every sample of a group (tensors have batch dim 1 and are broadcast to the group), so a
    trajectory stores it once per group, not per sample.

    Attributes:
        prompt: the user instruction (before any template).
        height: target image height in pixels.
        width: target image width in pixels.
        image_seq_len: ``L``, packed target tokens; the schedule's μ uses this (reference
            tokens are not counted, docs: SDE sampling and the fused log-prob).
        reference_sizes: ``(height, width)`` in pixels of each reference *after* resizing, in
            the order given (the order matters: it sets each reference's position ids).
        prompt_embeds: `(1, S, E)` text-encoder features of the templated prompt.
        prompt_mask: `(1, S)` 0/1 mask of valid text tokens, or None when all are valid.
        reference_latents: `(1, L_ref, D)` VAE latents of all references, normalised, packed and
            concatenated along the sequence axis in reference order.
        negative_prompt_embeds: `(1, S', E)` features of the negative prompt, present only when
            the condition was encoded for classifier-free guidance.
        negative_prompt_mask: `(1, S')` mask of the negative prompt, or None.
        extras: backbone-specific tensors (e.g. FLUX.2 position ids ``img_ids``/``txt_ids``),
            each with batch dim 1.
    """

    prompt: str
    height: int
    width: int
    image_seq_len: int
    reference_sizes: tuple[tuple[int, int], ...]
    prompt_embeds: Tensor
    prompt_mask: Tensor | None
    reference_latents: Tensor
    negative_prompt_embeds: Tensor | None = None
    negative_prompt_mask: Tensor | None = None
    extras: Mapping[str, Tensor] = field(default_factory=dict)

    @property
    def num_references(self) -> int:
        """Number of reference images."""
        return len(self.reference_sizes)

    @property
    def has_negative(self) -> bool:
        """Whether negative-prompt features are present (needed for guidance > 1)."""
        return self.negative_prompt_embeds is not None

    def to(self, device: torch.device | str) -> "Condition":
        """A copy with every tensor moved to ``device``."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return replace(
            self,
            prompt_embeds=self.prompt_embeds.to(device),
            prompt_mask=move(self.prompt_mask),
            reference_latents=self.reference_latents.to(device),
            negative_prompt_embeds=move(self.negative_prompt_embeds),
            negative_prompt_mask=move(self.negative_prompt_mask),
            extras={k: v.to(device) for k, v in self.extras.items()},
        )


@runtime_checkable
class Backbone(Protocol):
    r"""What rewardkit needs from a flow-matching image backbone with multi-reference input.

    An implementation wraps the model's components (transformer, VAE, text encoder, scheduler
    config) and owns no sampling loop state: :func:`rewardkit.backbone.rollout` and
    :func:`rewardkit.backbone.step_log_prob` drive it with the core SDE step. Every method is
    deterministic given its arguments; randomness comes only from an explicit generator.

    The velocity forward is

    $$
    v_\theta(x_\sigma, \sigma, c) = w\,\big[f_\theta(x_\sigma, \sigma, c) - f_\theta(x_\sigma,
    \sigma, c_\varnothing)\big] + f_\theta(x_\sigma, \sigma, c_\varnothing),
    $$

    with guidance scale $w$ (``guidance_scale``; $w = 1$ is a single conditional forward, no
    guidance), $f_\theta$ the transformer sliced to the target tokens and $c_\varnothing$ the
    negative-prompt condition. Backbones may rescale the guided velocity (Qwen's true-CFG keeps
    the conditional norm per token); their docs say so.

    Attributes:
        name: registry name, e.g. ``"qwen-image-edit-2511"``.
        lora_target_modules: default module-name suffixes that receive LoRA adapters.
        transformer: the denoiser module that holds the LoRA adapter (the recipes shard its
            frozen base with FSDP; ``_no_split_modules`` names its repeated blocks).
        device: where the model runs.
    """

    name: str
    lora_target_modules: tuple[str, ...]
    transformer: torch.nn.Module

    @property
    def device(self) -> torch.device:
        """Device of the transformer."""
        ...

    def encode_condition(
        self,
        prompts: Sequence[str],
        references: Sequence[Sequence[ReferenceImage]],
        *,
        height: int | None = None,
        width: int | None = None,
        negative_prompt: str | None = None,
    ) -> list[Condition]:
        """Encode a batch of (prompt, ordered references) pairs, one :class:`Condition` each.

        Args:
            prompts: B instructions.
            references: B sequences of ≥ 1 RGB PIL images; sizes may differ (ragged).
            height: target height in pixels, or None for the backbone's rule.
            width: target width in pixels, or None for the backbone's rule.
            negative_prompt: if given, also encode it (required for guidance > 1).

        Returns:
            B conditions.

        Raises:
            ValueError: no reference, wrong image mode, image below the backbone's minimum
                size, or mismatched lengths.
        """
        ...

    def sigmas(self, num_steps: int, height: int, width: int) -> Tensor:
        """`(N + 1,)` float64 sigma schedule ``[1, …, 0]`` for a target of ``height × width``."""
        ...

    def initial_latents(
        self, batch_size: int, height: int, width: int, *, generator: torch.Generator | None
    ) -> Tensor:
        """`(B, L, D)` float32 standard-normal packed latents, drawn as the diffusers pipeline does."""
        ...

    def velocity(
        self,
        latents: Tensor,
        sigma: float | Tensor,
        condition: Condition,
        *,
        guidance_scale: float = 1.0,
        adapter: bool = True,
    ) -> Tensor:
        """Predicted velocity at ``(latents, sigma)`` for one condition (broadcast over B).

        Runs under the backbone's precision policy (e.g. bf16 autocast) with gradients enabled
        whenever the caller's grad mode is.

        Args:
            latents: `(B, L, D)` noisy target latents.
            sigma: noise level σ ∈ [0, 1], one for the batch or a `(B,)` tensor (one per
                sample: several noise levels of one condition in a single forward).
            condition: the shared condition of the B samples.
            guidance_scale: classifier-free guidance scale w (1 = off).
            adapter: False runs the model with its LoRA adapter disabled (KL reference).

        Returns:
            `(B, L, D)` float32 velocity.
        """
        ...

    def pack_latents(self, latents: Tensor) -> Tensor:
        """`(B, C, h, w)` VAE latents → `(B, L, D)` packed tokens."""
        ...

    def unpack_latents(self, tokens: Tensor, height: int, width: int) -> Tensor:
        """`(B, L, D)` packed tokens of a ``height × width`` image → `(B, C, h, w)` latents."""
        ...

    def encode_images(self, images: Tensor) -> Tensor:
        """`(B, 3, H, W)` images in [0, 1] → `(B, L, D)` normalised packed latents (VAE mode)."""
        ...

    def decode_latents(self, tokens: Tensor, height: int, width: int) -> Tensor:
        """`(B, L, D)` packed latents → `(B, 3, H, W)` float32 images in [0, 1]."""
        ...

    def add_adapter(
        self, *, rank: int, alpha: float | None = None, target_modules: Sequence[str] | None = None
    ) -> None:
        """Attach a fresh trainable LoRA adapter (float32 master weights; base frozen)."""
        ...

    def adapter_parameters(self) -> list[torch.nn.Parameter]:
        """The trainable LoRA parameters (empty without an adapter)."""
        ...

    def save_adapter(self, directory: str | Path) -> Path:
        """Write the adapter weights and config to ``directory``; return the directory."""
        ...

    def load_adapter(self, directory: str | Path) -> None:
        """Load an adapter written by :meth:`save_adapter` (replacing any current one)."""
        ...

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Switch activation checkpointing of the transformer blocks on or off."""
        ...


@dataclass(frozen=True)
class BackbonePlugin:
    """What an entry point in the ``rewardkit.backbones`` group points at.

    A third-party package registers a backbone with, in its ``pyproject.toml``::

        [project.entry-points."rewardkit.backbones"]
        my-model = "my_package.my_module:PLUGIN"

    where ``PLUGIN = BackbonePlugin(name="my-model", load=..., make_tiny_checkpoint=...)``.

    Attributes:
        name: registry name (must equal the entry-point name).
        load: ``load(path, **options) -> Backbone``; ``path`` is a local directory or hub id.
        make_tiny_checkpoint: ``make_tiny_checkpoint(directory) -> Path`` writes a tiny
            random-weight checkpoint that ``load`` accepts (for tests and CPU demos).
        options: the adapter's typed options dataclass (documents what ``**options`` accepts).
        recipe_defaults: per recipe (``"sft"``, ``"grpo"``), overrides of the recipe config's
            dataclass defaults for this backbone, nested like the config (e.g.
            ``{"grpo": {"model": {"lora_rank": 64}}}``). They sit between the dataclass defaults
            and the user's YAML; the backbone, not the core, owns its tuning.
        plan: ``plan(variant, *, device="meta") -> PlanModel`` builds the transformer without
            weights for the memory planner (``rewardkit plan``); ``variant=None`` is the
            default variant, ``"tiny"`` the tiny-checkpoint config. ``None``: not plannable.
    """

    name: str
    load: Callable[..., Backbone]
    make_tiny_checkpoint: Callable[[Path], Path]
    options: type | None = None
    recipe_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    plan: "Callable[..., PlanModel] | None" = None
