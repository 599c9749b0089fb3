r"""Advantages against a moving-average baseline (seed 003's DDPO variant), as state + pure update.

Seed 003 estimates $A = r - b$ with $b$ a moving average of the reward: no groups and no value
network. The baseline is a tiny state threaded through the training loop (and saved in
checkpoints), in the optax style: [`BaselineState`][rewardkit.BaselineState] plus the pure
function [`baseline_advantages`][rewardkit.baseline_advantages].
"""

from typing import NamedTuple

import torch
from torch import Tensor

from rewardkit.core._checks import check_float_tensor, compute_dtype

__all__ = ["BaselineState", "baseline_advantages"]


class BaselineState(NamedTuple):
    """The moving-average baseline.

    Attributes:
        value: the current baseline $b$ (meaningless while ``updates == 0``).
        updates: batches seen so far; 0 means "not initialised" (the first batch's mean is used).
    """

    value: float = 0.0
    updates: int = 0


def baseline_advantages(
    rewards: Tensor, state: BaselineState, *, decay: float = 0.9
) -> tuple[Tensor, BaselineState]:
    r"""Advantages $A_i = r_i - b$ and the updated baseline.

    $$
    A_i = r_i - b,\qquad
    b \leftarrow d\,b + (1 - d)\,\bar r,\qquad \bar r = \frac1N\sum_i r_i,
    $$

    where $b$ is the baseline *before* this batch; on the first batch ($\text{updates} = 0$) the
    baseline is initialised to $\bar r$, so the first advantages are $r_i - \bar r$.

    Args:
        rewards: `(N,)` finite scalar rewards of the batch (gather them over ranks first so
            every rank holds the same baseline).
        state: the baseline before this batch.
        decay: $d \in [0, 1)$; 0 makes $b$ the previous batch's mean.

    Returns:
        ``(advantages, new_state)``: `(N,)` advantages in the dtype of ``rewards``, and the state.

    Raises:
        ValueError: empty or non-finite rewards, decay outside [0, 1).

    Example:
        >>> import torch, rewardkit
        >>> adv, s = rewardkit.baseline_advantages(torch.tensor([1.0, 3.0]), rewardkit.BaselineState())
        >>> adv, s
        (tensor([-1.,  1.]), BaselineState(value=2.0, updates=1))
        >>> adv, s = rewardkit.baseline_advantages(torch.tensor([4.0, 4.0]), s, decay=0.5)
        >>> adv, s
        (tensor([2., 2.]), BaselineState(value=3.0, updates=2))

    References:
        Seed 003 (*From single to dual reference*), §3.3; Black et al., *DDPO*, 2023.
    """
    check_float_tensor("rewards", rewards, ndim=1)
    if rewards.shape[0] == 0:
        raise ValueError("rewards is empty; expected at least one reward")
    if not bool(torch.isfinite(rewards).all()):
        raise ValueError(
            "rewards must be finite; combine several rewards into one scalar per sample first, "
            "and drop or fill undefined (NaN) ones"
        )
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    dtype = compute_dtype(rewards)
    mean = float(rewards.to(dtype).mean())
    baseline = mean if state.updates == 0 else state.value
    advantages = (rewards.to(dtype) - baseline).to(rewards.dtype)
    new_value = mean if state.updates == 0 else decay * state.value + (1.0 - decay) * mean
    return advantages, BaselineState(new_value, state.updates + 1)
