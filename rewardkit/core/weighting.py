"""DAR: difficulty-aware advantage reweighting (per-group loss weights)."""

from torch import Tensor

from rewardkit.core._checks import (
    check_float_tensor,
    check_group_ids,
    check_no_nan,
    check_nonnegative,
    check_positive,
    compute_dtype,
)
from rewardkit.core._segments import group_index, segment_mean

__all__ = ["dar_weights"]


def dar_weights(
    similarity: Tensor,
    group_ids: Tensor,
    *,
    gamma: float = 2.0,
    w_min: float = 0.5,
    w_max: float = 5.0,
    eps: float = 1e-6,
    reclip: bool = True,
    allow_singleton_groups: bool = False,
) -> Tensor:
    r"""DAR loss weights: harder groups (lower mean similarity) get larger weights.

    $$
    p_g = \frac{1}{n_g}\sum_{i\in g}\operatorname{clip}(s_i, 0, 1),\qquad
    \tilde w_g = \operatorname{clip}\!\left((\max(0, 1 - p_g) + \epsilon)^{\gamma},\
                 w_{\min}, w_{\max}\right),
    $$
    $$
    \bar w = \max\Big(\frac{1}{G}\sum_{g} \tilde w_g,\ \epsilon\Big),\qquad
    w_g = \operatorname{clip}\!\left(\tilde w_g / \bar w,\ w_{\min}, w_{\max}\right),\qquad
    w_i = w_{g(i)}
    $$

    where $s_i$ is the difficulty signal of sample $i$ (the raw, pre-DRS similarity to the
    target), $g(i)$ its group, $G$ the number of groups and $\gamma$ the focusing exponent (as
    in the focal loss). The policy loss becomes $\frac1B\sum_i w_i L_i$; advantages are
    unchanged. The mean $\bar w$ is over groups (unweighted), so with equal group sizes the
    weights average to 1 over samples whenever no clip binds.

    This is the paper's order: raw weight, clip, normalise to mean 1, clip again
    (``reclip=False`` skips the last clip). Flow-Factory's code is this order with $\gamma$
    truncated to an integer and statistics over one rank's partial groups; pass
    ``gamma=float(int(g))`` to reproduce the former. Here groups are always whole.

    Args:
        similarity: `(N,)` raw similarity $s_i$ per sample, higher = easier (values outside
            [0, 1] are clipped).
        group_ids: `(N,)` integer group label per sample; every group needs at least 2
            samples, since a group of one is what a rank sees of a group split across ranks
            (gather whole groups first).
        gamma: focusing exponent $\gamma \ge 0$ (float; no integer truncation).
        w_min: lower weight bound, $0 \le w_{\min} \le w_{\max}$.
        w_max: upper weight bound (``math.inf`` for none).
        eps: $\epsilon > 0$, keeps the base positive and the normaliser away from 0.
        reclip: clip again after normalising to mean 1.
        allow_singleton_groups: accept groups of one sample (each is then weighted by its own
            similarity).

    Returns:
        `(N,)` weights in the dtype of ``similarity``, equal within each group. They are
        constants of the loss (no gradient flows through them).

    Raises:
        ValueError: shape mismatch, NaN similarity, a group of one sample, ``w_min > w_max``,
            negative bounds or ``gamma``, non-positive ``eps``.
        TypeError: non-float similarity or non-integer ``group_ids``.

    Example:
        >>> import torch, rewardkit
        >>> s = torch.tensor([0.1, 0.1, 0.3, 0.3])  # group 0 is harder than group 1
        >>> rewardkit.dar_weights(s, torch.tensor([0, 0, 1, 1]), w_min=0.0)
        tensor([1.2462, 1.2462, 0.7538, 0.7538])

    References:
        DyRef (arXiv 2606.26947), difficulty-aware advantage reweighting; Lin et al., *Focal
        Loss*, 2017; Flow-Factory ``trainers/grpo.py::GRPOTrainer.optimize`` (``is_focal_loss``).
    """
    check_float_tensor("similarity", similarity, ndim=1)
    check_group_ids(group_ids, similarity.shape[0])
    if similarity.shape[0] == 0:
        raise ValueError("similarity is empty; expected at least one sample")
    check_no_nan("similarity", similarity, allow_inf=True)
    gamma = check_nonnegative("gamma", gamma)
    w_min = check_nonnegative("w_min", w_min)
    w_max = check_nonnegative("w_max", w_max, allow_inf=True)
    eps = check_positive("eps", eps)
    if w_min > w_max:
        raise ValueError(f"w_min must be <= w_max, got w_min={w_min} > w_max={w_max}")

    groups = group_index(group_ids)
    smallest = int(groups.counts.min())
    if smallest < 2 and not allow_singleton_groups:
        raise ValueError(
            "group_ids: a group has a single sample, which is what one rank sees of a group split "
            "across ranks; gather whole groups first (rewardkit.training.gather_samples), or pass "
            "allow_singleton_groups=True if groups of one are intended"
        )
    p = similarity.detach().to(compute_dtype(similarity)).clamp(0.0, 1.0)
    p_group = segment_mean(p, groups)  # (G,)
    raw = ((1.0 - p_group).clamp_min(0.0) + eps).pow(gamma).clamp(w_min, w_max)
    weights = raw / raw.mean().clamp_min(eps)
    if reclip:
        weights = weights.clamp(w_min, w_max)
    return weights[groups.inverse].to(similarity.dtype)
