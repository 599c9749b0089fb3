"""The clipped (PPO-style) policy-gradient loss used by Flow-GRPO and its variants."""

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from rewardkit.core._checks import as_range, check_float_tensor, check_no_nan, compute_dtype

__all__ = ["PolicyLossStats", "clipped_policy_loss"]


class PolicyLossStats(NamedTuple):
    r"""Diagnostics of one [`clipped_policy_loss`][rewardkit.clipped_policy_loss] call (detached scalars).

    Kept as tensors so logging them costs no host synchronisation until the caller asks.

    Attributes:
        ratio_mean: mean importance ratio $r$ (1 before any update).
        ratio_min: smallest ratio.
        ratio_max: largest ratio.
        clip_frac: fraction of entries whose clipped branch is active (gradient zeroed): the
            PPO meaning.
        ratio_outside_frac: fraction with the ratio outside the trust region,
            $r \notin [1 + \epsilon_{lo}, 1 + \epsilon_{hi}]$, whatever the advantage's sign:
            Flow-GRPO's logged ``clipfrac`` (``mean(|r − 1| > ε)``). It is ≥ ``clip_frac``.
        clip_frac_low: fraction with $r < 1 + \epsilon_{lo}$ and $A < 0$.
        clip_frac_high: fraction with $r > 1 + \epsilon_{hi}$ and $A > 0$.
        adv_clip_frac: fraction of advantages changed by the advantage clip.
        approx_kl: $\frac12\,\mathbb E[(\ell - \ell_{old})^2]$, Flow-GRPO's estimate.
    """

    ratio_mean: Tensor
    ratio_min: Tensor
    ratio_max: Tensor
    clip_frac: Tensor
    clip_frac_low: Tensor
    clip_frac_high: Tensor
    adv_clip_frac: Tensor
    approx_kl: Tensor
    ratio_outside_frac: Tensor


def _broadcast_like(name: str, value: Tensor, reference: Tensor) -> Tensor:
    """Accept ``value`` shaped like ``reference`` or `(B,)`, broadcast over trailing dims."""
    if value.shape == reference.shape:
        return value
    if value.ndim == 1 and reference.ndim >= 1 and value.shape[0] == reference.shape[0]:
        return value.reshape(-1, *([1] * (reference.ndim - 1)))
    raise ValueError(
        f"{name} must have the shape of log_prob {tuple(reference.shape)} or be (B,) with "
        f"B = {reference.shape[0] if reference.ndim else 'n/a'}; got {tuple(value.shape)}"
    )


def clipped_policy_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    *,
    clip_range: float | Sequence[float] = 1e-4,
    adv_clip: float | Sequence[float] = 5.0,
    weights: Tensor | None = None,
) -> tuple[Tensor, PolicyLossStats]:
    r"""Clipped surrogate policy loss, optionally weighted per sample (DAR).

    $$
    \tilde A_i = \operatorname{clip}(A_i, a_{lo}, a_{hi}),\qquad
    r_i = \exp(\ell_i - \ell^{old}_i),
    $$
    $$
    L = \frac{1}{B}\sum_{i} w_i\,\max\!\Big(-\tilde A_i\, r_i,\;
        -\tilde A_i\,\operatorname{clip}\big(r_i,\ 1+\epsilon_{lo},\ 1+\epsilon_{hi}\big)\Big)
    $$

    where $\ell_i$ is the log-probability of the sampled step under the current policy (a
    per-element mean, see [`sde_step`][rewardkit.sde_step]), $\ell^{old}_i$ the one recorded at
    rollout, $w_i$ the optional weights (1 when ``None``). At $r = 1$ the loss equals
    $-\frac1B\sum_i w_i \tilde A_i$ and its gradient is $-\frac1B w_i \tilde A_i \nabla\ell_i$.

    Args:
        log_prob: `(B,)` or `(B, T)` current log-probabilities $\ell$; carries the gradient.
        old_log_prob: same shape, rollout log-probabilities $\ell^{old}$ (treated as constants).
        advantages: same shape as ``log_prob`` or `(B,)`; treated as constants.
        clip_range: $c$ meaning $(\epsilon_{lo}, \epsilon_{hi}) = (-|c|, |c|)$, or a pair
            ``(lo, hi)`` with ``lo <= 0 <= hi``. Flow-GRPO uses 1e-4 on mean-reduced
            log-probs.
        adv_clip: $c$ meaning $(a_{lo}, a_{hi}) = (-|c|, |c|)$, or a pair ``(lo, hi)``.
        weights: optional per-sample weights $w$ (e.g. from [`dar_weights`][rewardkit.dar_weights]),
            same shape as ``log_prob`` or `(B,)`; treated as constants.

    Returns:
        ``(loss, stats)``: the scalar loss (float32, or float64 for float64 input) and a
        [`PolicyLossStats`][rewardkit.PolicyLossStats] of detached diagnostics.

    Raises:
        ValueError: mismatched shapes, non-finite inputs, malformed clip ranges, or a lower
            ratio bound ``1 + lo <= 0``.
        TypeError: non-float tensors.

    Example:
        >>> import torch, rewardkit
        >>> lp = torch.zeros(2, requires_grad=True)
        >>> loss, stats = rewardkit.clipped_policy_loss(lp, torch.zeros(2), torch.tensor([1.0, -3.0]))
        >>> loss, stats.ratio_mean
        (tensor(1., grad_fn=<MeanBackward0>), tensor(1.))

    References:
        Schulman et al., *PPO*, 2017, Eq. 7; Liu et al., *Flow-GRPO*, 2025, Eq. 7;
        Flow-Factory ``trainers/grpo.py::GRPOTrainer.optimize``.
    """
    check_float_tensor("log_prob", log_prob)
    check_float_tensor("old_log_prob", old_log_prob)
    check_float_tensor("advantages", advantages)
    if log_prob.ndim == 0 or log_prob.numel() == 0:
        raise ValueError(f"log_prob must be (B,) or (B, T) with B >= 1, got {tuple(log_prob.shape)}")
    if old_log_prob.shape != log_prob.shape:
        raise ValueError(
            f"old_log_prob must have the shape of log_prob {tuple(log_prob.shape)}, "
            f"got {tuple(old_log_prob.shape)}"
        )
    ratio_lo, ratio_hi = as_range("clip_range", clip_range)
    if 1.0 + ratio_lo <= 0.0:
        raise ValueError(f"clip_range lower bound must be > -1 (ratios are positive), got {ratio_lo}")
    adv_lo, adv_hi = as_range("adv_clip", adv_clip)
    for name, tensor in (("log_prob", log_prob), ("old_log_prob", old_log_prob)):
        check_no_nan(name, tensor.detach())
    check_no_nan("advantages", advantages)

    dtype = compute_dtype(log_prob, old_log_prob, advantages)
    adv = _broadcast_like("advantages", advantages, log_prob).detach().to(dtype)
    clipped_adv = adv.clamp(adv_lo, adv_hi)
    log_ratio = log_prob.to(dtype) - old_log_prob.detach().to(dtype)
    ratio = torch.exp(log_ratio)
    unclipped_loss = -clipped_adv * ratio
    clipped_loss = -clipped_adv * ratio.clamp(1.0 + ratio_lo, 1.0 + ratio_hi)
    per_sample = torch.maximum(unclipped_loss, clipped_loss)
    if weights is not None:
        check_float_tensor("weights", weights)
        check_no_nan("weights", weights)
        per_sample = per_sample * _broadcast_like("weights", weights, log_prob).detach().to(dtype)
    loss = per_sample.mean()

    with torch.no_grad():
        full_adv = clipped_adv.expand_as(ratio)
        low = (ratio < 1.0 + ratio_lo) & (full_adv < 0)
        high = (ratio > 1.0 + ratio_hi) & (full_adv > 0)
        stats = PolicyLossStats(
            ratio_mean=ratio.mean(),
            ratio_min=ratio.min(),
            ratio_max=ratio.max(),
            clip_frac=(low | high).to(dtype).mean(),
            clip_frac_low=low.to(dtype).mean(),
            clip_frac_high=high.to(dtype).mean(),
            adv_clip_frac=(clipped_adv != adv).to(dtype).mean(),
            approx_kl=0.5 * log_ratio.square().mean(),
            ratio_outside_frac=((ratio < 1.0 + ratio_lo) | (ratio > 1.0 + ratio_hi)).to(dtype).mean(),
        )
    return loss, stats
