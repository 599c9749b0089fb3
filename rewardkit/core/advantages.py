"""Group-relative advantages: plain GRPO z-scores and GDPO multi-reward normalisation.

Numerics: statistics are accumulated in float32 (float64 for float64 input); the result is
returned in the input dtype. Groups whose members all hold the same reward get exactly zero
advantage (instead of ``eps``-sized residue divided by the std floor).
"""

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor

from rewardkit.core._checks import (
    check_ddof,
    check_float_tensor,
    check_group_ids,
    check_no_nan,
    check_nonnegative,
    compute_dtype,
)
from rewardkit.core._segments import (
    GroupIndex,
    group_index,
    segment_is_constant,
    segment_mean,
    segment_sum,
)

__all__ = ["gdpo_advantages", "group_advantages"]


def _checked_groups(group_ids: Tensor) -> GroupIndex:
    """Index the groups and reject groups too small to define a relative advantage."""
    groups = group_index(group_ids)
    smallest = int(groups.counts.min())
    if smallest < 2:
        raise ValueError(
            "group_ids: every group needs at least 2 samples (a group of one has no relative "
            f"advantage); the smallest group has {smallest}. Check the group size / sampler."
        )
    return groups


StdFloor = Literal["clamp", "add"]


def _check_floor_mode(std_floor_mode: object) -> StdFloor:
    if std_floor_mode not in ("clamp", "add"):
        raise ValueError(
            "std_floor_mode must be 'clamp' (max(std, ε), Flow-Factory) or 'add' (std + ε, "
            f"Flow-GRPO), got {std_floor_mode!r}"
        )
    return std_floor_mode


def _floored(std: Tensor, std_floor: float, mode: StdFloor) -> Tensor:
    r"""The denominator: $\max(\text{std}, \epsilon)$ or $\text{std} + \epsilon$."""
    return std + std_floor if mode == "add" else std.clamp_min(std_floor)


def _zscore_per_group(
    values: Tensor,
    valid: Tensor,
    groups: GroupIndex,
    *,
    std_floor: float,
    ddof: int,
    mode: StdFloor = "clamp",
) -> Tensor:
    r"""Per-group z-score of ``values`` (`(N, K)`) over the ``valid`` members only.

    Invalid entries, and groups with fewer than ``ddof + 1`` valid members or a constant value,
    get exactly 0.
    """
    zeros = torch.zeros_like(values)
    filled = torch.where(valid, values, zeros)
    n_valid = segment_sum(valid.to(values.dtype), groups)  # (G, K)
    mean = segment_sum(filled, groups) / n_valid.clamp_min(1)
    centred = torch.where(valid, values - mean[groups.inverse], zeros)
    dof = (n_valid - ddof).clamp_min(1)
    std = _floored((segment_sum(centred.square(), groups) / dof).sqrt(), std_floor, mode)
    # A constant group (or one with <= ddof valid members) carries no ranking information.
    degenerate = segment_is_constant(values, groups, valid) | (n_valid <= ddof)
    scores = centred / std[groups.inverse]
    return torch.where(degenerate[groups.inverse] | ~valid, zeros, scores)


def group_advantages(
    rewards: Tensor,
    group_ids: Tensor,
    *,
    std_floor: float = 1e-6,
    ddof: int = 0,
    global_std: bool = False,
    std_floor_mode: StdFloor = "clamp",
) -> Tensor:
    r"""Group-relative (GRPO) advantages: each reward's z-score within its group.

    $$
    A_i = \frac{r_i - \bar r_{g(i)}}{\max\left(\operatorname{std}_{g(i)}(r),\ \epsilon\right)},
    \qquad
    \bar r_g = \frac{1}{n_g}\sum_{j \in g} r_j,\quad
    \operatorname{std}_g(r) = \sqrt{\frac{1}{n_g - \delta}\sum_{j\in g}(r_j - \bar r_g)^2}
    $$

    where $g(i)$ is the group of sample $i$ (the rollouts of one prompt and reference set),
    $n_g$ its size, $\delta$ = ``ddof`` and $\epsilon$ = ``std_floor``. With
    ``global_std=True`` the denominator is the std of the whole batch instead of the group's
    (Flow-GRPO's default); with ``std_floor_mode="add"`` it is $\operatorname{std} + \epsilon$
    instead of $\max(\operatorname{std}, \epsilon)$ (Flow-GRPO: ``std + 1e-4``). A group whose
    rewards are all equal gets exactly zero advantage.

    Args:
        rewards: `(N,)` scalar reward per sample (already aggregated over reward functions).
        group_ids: `(N,)` integer group label per sample; labels need not be contiguous.
        std_floor: $\epsilon \ge 0$, lower bound of the std (Flow-Factory uses ``1e-6``).
        ddof: 0 for the population std (Flow-Factory, ``np.std``), 1 for the sample std.
        global_std: divide by the batch std instead of each group's std.
        std_floor_mode: ``"clamp"`` (default, Flow-Factory) or ``"add"`` (Flow-GRPO's
            ``(r − mean) / (std + 1e-4)``: pass ``std_floor=1e-4, std_floor_mode="add"``).

    Returns:
        `(N,)` advantages in the dtype of ``rewards``; differentiable w.r.t. ``rewards``.

    Raises:
        ValueError: wrong shapes, NaN/inf rewards, a group with fewer than 2 samples,
            negative ``std_floor``, ``ddof`` not in {0, 1}.
        TypeError: non-float rewards or non-integer ``group_ids``.

    Example:
        >>> import torch, rewardkit
        >>> rewardkit.group_advantages(torch.tensor([1.0, 3.0, 5.0, 5.0]),
        ...                            torch.tensor([0, 0, 1, 1]))
        tensor([-1.,  1.,  0.,  0.])

    References:
        Shao et al., *DeepSeekMath* (GRPO), 2024, Eq. 4; Liu et al., *Flow-GRPO*, 2025, Eq. 6;
        Flow-Factory ``trainers/grpo.py::GRPOTrainer.compute_advantages``.
    """
    check_float_tensor("rewards", rewards, ndim=1)
    check_group_ids(group_ids, rewards.shape[0])
    if rewards.shape[0] == 0:
        raise ValueError("rewards is empty; expected at least one group of >= 2 samples")
    check_no_nan("rewards", rewards)
    std_floor = check_nonnegative("std_floor", std_floor)
    ddof = check_ddof(ddof)
    mode = _check_floor_mode(std_floor_mode)
    groups = _checked_groups(group_ids)

    r = rewards.to(compute_dtype(rewards)).unsqueeze(1)  # (N, 1)
    valid = torch.ones_like(r, dtype=torch.bool)
    if not global_std:
        adv = _zscore_per_group(r, valid, groups, std_floor=std_floor, ddof=ddof, mode=mode)
        return adv.squeeze(1).to(rewards.dtype)
    centred = r - segment_mean(r, groups)[groups.inverse]
    std = _floored(r.std(correction=ddof), std_floor, mode)
    constant = segment_is_constant(r, groups)[groups.inverse]
    adv = torch.where(constant, torch.zeros_like(centred), centred / std)
    return adv.squeeze(1).to(rewards.dtype)


def gdpo_advantages(
    rewards: Tensor,
    group_ids: Tensor,
    weights: Tensor | Sequence[float] | None = None,
    *,
    std_floor: float = 1e-6,
    ddof: int = 0,
    std_floor_mode: StdFloor = "clamp",
) -> Tensor:
    r"""GDPO advantages: normalise each reward per group, weight and sum, then whiten the batch.

    $$
    \hat A^{(k)}_i = \frac{r^{(k)}_i - \bar r^{(k)}_{g(i)}}
                          {\max\left(\operatorname{std}_{g(i)} r^{(k)},\ \epsilon\right)},\qquad
    S_i = \sum_{k=1}^{K} w_k\,\hat A^{(k)}_i,\qquad
    A_i = \frac{S_i - \bar S}{\max\left(\operatorname{std}(S),\ \epsilon\right)}
    $$

    with group statistics over the valid members of group $g(i)$, $w_k$ = ``weights`` and the
    final mean and std over the whole batch. Normalising each reward before summing keeps a
    reward with a large spread from drowning the others (the GDPO point); because the batch is
    whitened after weighting, only the ratios between the $w_k$ matter.

    **Undefined rewards.** A NaN in ``rewards[i, k]`` means reward $k$ does not apply to
    sample $i$ (e.g. a style score without a style reference). Such entries get
    $\hat A^{(k)}_i = 0$ and are left out of their group's statistics, so they never add
    spurious within-group variance. A group with no (or, for ``ddof=1``, one) valid entry for
    reward $k$ contributes 0 for that reward.

    Args:
        rewards: `(N, K)` reward $k$ of sample $i$; NaN where undefined. A 1-D `(N,)` input
            is treated as $K = 1$.
        group_ids: `(N,)` integer group label per sample.
        weights: `(K,)` finite, non-negative weights $w_k$, not all 0, in the order of the
            reward columns (a sequence or tensor, not a dict); ``None`` means all ones.
        std_floor: $\epsilon \ge 0$, lower bound of every std.
        ddof: 0 (Flow-Factory) or 1 (NVlabs GDPO) for both the group and the batch std.
        std_floor_mode: ``"clamp"`` ($\max(\text{std}, \epsilon)$, default) or ``"add"``
            ($\text{std} + \epsilon$), for every std.

    Returns:
        `(N,)` advantages in the dtype of ``rewards``.

    Raises:
        ValueError: wrong shapes, infinite rewards, a group with fewer than 2 samples,
            ``weights`` of the wrong length, non-finite, negative or all zero, negative
            ``std_floor``.
        TypeError: non-float rewards, non-integer ``group_ids``, a dict of weights.

    Example:
        >>> import torch, rewardkit
        >>> r = torch.tensor([[1.0, 10.0], [2.0, 30.0], [0.0, float("nan")], [1.0, float("nan")]])
        >>> rewardkit.gdpo_advantages(r, torch.tensor([0, 0, 1, 1]), [1.0, 0.8])
        tensor([-1.2362,  1.2362, -0.6868,  0.6868])

    References:
        Liu et al., *GDPO: Group reward-Decoupled Normalization Policy Optimization*, 2026
        (NVlabs/GDPO); Flow-Factory ``trainers/gdpo.py::GDPOTrainer.compute_advantages``.
    """
    check_float_tensor("rewards", rewards)
    if rewards.ndim == 1:
        rewards = rewards.unsqueeze(1)
    if rewards.ndim != 2:
        raise ValueError(
            f"rewards must be (N, K) (one column per reward function), got shape {tuple(rewards.shape)}"
        )
    n, k = rewards.shape
    check_group_ids(group_ids, n)
    if n == 0 or k == 0:
        raise ValueError(f"rewards is empty (shape {(n, k)}); expected N >= 2 and K >= 1")
    if bool(torch.isinf(rewards).any()):  # NaN means "undefined"; an infinity is a bug upstream
        raise ValueError(
            f"rewards contains {int(torch.isinf(rewards).sum())} infinite value(s); expected finite "
            "rewards, with NaN only where a reward does not apply to a sample"
        )
    std_floor = check_nonnegative("std_floor", std_floor)
    ddof = check_ddof(ddof)
    mode = _check_floor_mode(std_floor_mode)
    groups = _checked_groups(group_ids)

    dtype = compute_dtype(rewards)
    r = rewards.to(dtype)
    w = _reward_weights(weights, k, dtype, r.device)
    valid = ~torch.isnan(r)
    per_reward = _zscore_per_group(r, valid, groups, std_floor=std_floor, ddof=ddof, mode=mode)
    summed = per_reward @ w  # (N,)
    if bool((summed == summed[0]).all()):
        return torch.zeros_like(summed).to(rewards.dtype)
    std = _floored(summed.std(correction=ddof), std_floor, mode)
    return ((summed - summed.mean()) / std).to(rewards.dtype)


def _reward_weights(
    weights: Tensor | Sequence[float] | None, k: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Validate the per-reward weights and return them as a `(K,)` tensor."""
    if weights is None:
        return torch.ones(k, dtype=dtype, device=device)
    if isinstance(weights, Mapping):
        raise TypeError(
            f"weights must be a sequence of {k} numbers in the order of the reward columns, got a "
            f"dict with keys {list(weights)}; pass [weights[name] for name in reward_names]"
        )
    try:
        w = torch.as_tensor(weights, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"weights must be a sequence of {k} numbers, got {weights!r}") from err
    if w.ndim != 1 or w.shape[0] != k:
        raise ValueError(f"weights must have one entry per reward column (K={k}), got shape {tuple(w.shape)}")
    check_no_nan("weights", w)
    if bool((w < 0).any()):
        raise ValueError(f"weights must be >= 0 (negate a penalty reward instead), got {w.tolist()}")
    if not bool((w > 0).any()):
        raise ValueError(f"weights are all zero, so every advantage would be 0; got {w.tolist()}")
    return w
