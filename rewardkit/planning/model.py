"""What a backbone tells the memory planner: :class:`PlanModel` and :class:`PlanShape`.

A backbone plug-in provides ``BackbonePlugin.plan(variant, device=...) -> PlanModel``: the
transformer built without weights (on the ``meta`` device), the parameter counts of the frozen
components, the names of the repeated block classes and a function that builds the transformer's
forward keyword arguments for a training shape. Nothing here imports diffusers or transformers.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["PlanModel", "PlanShape", "count_parameters"]


@dataclass(frozen=True)
class PlanShape:
    """The shape of one training forward: a micro-batch of targets with their references.

    Attributes:
        batch: samples in the forward (the micro-batch m).
        height: target height in pixels.
        width: target width in pixels.
        references: reference images per sample.
        reference_size: side in pixels of each (square) reference as the transformer sees it.
        text_tokens: prompt tokens after the text encoder.
    """

    batch: int
    height: int
    width: int
    references: int
    reference_size: int
    text_tokens: int

    def __post_init__(self) -> None:
        for name in ("batch", "height", "width", "reference_size", "text_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.references, bool) or not isinstance(self.references, int) or self.references < 0:
            raise ValueError(f"references must be a non-negative int, got {self.references!r}")


#: ``forward_kwargs(shape, device, dtype)``: the transformer's forward keyword arguments.
ForwardKwargs = Callable[[PlanShape, torch.device, torch.dtype], Mapping[str, Any]]


@dataclass(frozen=True)
class PlanModel:
    """A backbone's transformer and component sizes, as the memory planner needs them.

    Attributes:
        backbone: registry name of the backbone.
        variant: the variant built (e.g. ``"2511"``, ``"klein-4b"``, ``"tiny"``).
        transformer: the denoising transformer (on ``meta`` unless asked otherwise), no LoRA.
        text_encoder_params: parameters of the text encoder (frozen).
        vae_params: parameters of the VAE (frozen).
        lora_target_modules: the adapter's LoRA target module names.
        forward_kwargs: builds the transformer forward's keyword arguments for a
            :class:`PlanShape`, as the adapter conditions it (``[target; references]`` tokens
            and the text tokens); the first output is the velocity.
        multiple_of: target and reference sides must be multiples of this (pixels per token side).
        default_text_tokens: prompt tokens for a number of references (what the adapter's text
            encoding produces for a typical prompt).
    """

    backbone: str
    variant: str
    transformer: torch.nn.Module
    text_encoder_params: int
    vae_params: int
    lora_target_modules: tuple[str, ...]
    forward_kwargs: ForwardKwargs
    multiple_of: int
    default_text_tokens: Callable[[int], int]

    @property
    def block_classes(self) -> tuple[str, ...]:
        """Class names of the repeated blocks: the transformer's ``_no_split_modules``.

        The unit FSDP shards and gradient checkpointing recomputes, as in the recipes.
        """
        return tuple(getattr(self.transformer, "_no_split_modules", None) or ())

    @property
    def transformer_params(self) -> int:
        """Parameters of the transformer (base weights only; no LoRA attached yet)."""
        return count_parameters(self.transformer)

    def blocks(self) -> list[torch.nn.Module]:
        """The repeated blocks of the transformer, in module order."""
        names = set(self.block_classes)
        return [m for m in self.transformer.modules() if type(m).__name__ in names]


def count_parameters(module: torch.nn.Module, *, trainable: bool | None = None) -> int:
    r"""Number of parameter elements of ``module`` (shared parameters counted once).

    Args:
        module: any module, also on the ``meta`` device.
        trainable: ``True`` counts only parameters with ``requires_grad``, ``False`` only frozen
            ones, ``None`` all.

    Returns:
        $\sum_p \mathrm{numel}(p)$ over the selected parameters.

    Example:
        >>> count_parameters(torch.nn.Linear(3, 2))
        8
    """
    seen: set[int] = set()
    total = 0
    for p in module.parameters():
        if id(p) in seen or (trainable is not None and p.requires_grad != trainable):
            continue
        seen.add(id(p))
        total += p.numel()
    return total
