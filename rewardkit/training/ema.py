"""Exponential moving average of trainable weights, as a state plus pure update functions."""

from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["EMAState", "ema_decay", "ema_init", "ema_update"]


class EMAState(NamedTuple):
    """Shadow copies of the tracked parameters (float32) and how many updates they have seen."""

    shadow: dict[str, Tensor]
    num_updates: int


def ema_decay(epoch: int, max_decay: float) -> float:
    r"""Warm-up decay of Flow-Factory's EMA: $\min\big(\frac{1 + e}{10 + e},\ d_{\max}\big)$.

    Early epochs average fast (the shadow follows the weights), later ones slowly.
    """
    if not 0.0 <= max_decay < 1.0:
        raise ValueError(f"max_decay must be in [0, 1), got {max_decay}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return min((1.0 + epoch) / (10.0 + epoch), max_decay)


def ema_init(named_parameters: Iterable[tuple[str, Tensor]]) -> EMAState:
    """Start the average at the current weights (float32 copies)."""
    return EMAState({name: p.detach().float().clone() for name, p in named_parameters}, 0)


@torch.no_grad()
def ema_update(state: EMAState, named_parameters: Iterable[tuple[str, Tensor]], decay: float) -> EMAState:
    r"""One EMA step: $\bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta$ for every tracked weight.

    Args:
        state: the current average.
        named_parameters: the live weights, by the same names as at [`ema_init`][rewardkit.training.ema_init].
        decay: $d \in [0, 1)$.

    Returns:
        The updated state (its tensors are updated in place and returned in a new tuple).
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    params = dict(named_parameters)
    missing = set(state.shadow) - set(params)
    if missing:
        raise ValueError(f"named_parameters lacks tracked weight(s) {sorted(missing)[:3]}")
    for name, shadow in state.shadow.items():
        shadow.lerp_(params[name].detach().float(), 1.0 - decay)
    return EMAState(state.shadow, state.num_updates + 1)
