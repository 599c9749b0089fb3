"""DRS: discriminative reward scaling of a similarity reward."""

from collections.abc import Callable
from typing import Literal, TypeAlias

import torch
from torch import Tensor

from rewardkit.core._checks import check_float_tensor, check_no_nan, compute_dtype

__all__ = ["KMode", "RewardScaling", "drs_scale", "drs_steepness"]

KMode: TypeAlias = Literal["increase", "decrease", "flat"]
_K_MODES: tuple[str, ...] = ("increase", "decrease", "flat")

#: Any transform with the signature of drs_scale can replace it in a reward (the paper's
#: other DRS variant is not recoverable from the reference code; users can plug their own).
RewardScaling: TypeAlias = Callable[..., Tensor]


def drs_steepness(
    n_refs: Tensor | int | None,
    *,
    k_mode: str = "increase",
    k0: float = 10.0,
    k1: float = 3.0,
    n_min: int = 2,
    n_max: int = 6,
) -> Tensor | float:
    r"""Sigmoid steepness $k$ of DRS as a function of the number of references $n$.

    $$
    k = \begin{cases}
      k_0 + k_1\,(n - n_{\min}) & \text{increase} \\
      k_0 + k_1\,(n_{\max} - n) & \text{decrease} \\
      k_0 & \text{flat}
    \end{cases}
    $$

    Args:
        n_refs: number of reference images $n$, an int or an integer tensor; may be ``None``
            only for ``k_mode="flat"``.
        k_mode: ``"increase"``, ``"decrease"`` or ``"flat"``.
        k0: base steepness $k_0$.
        k1: steepness added per reference $k_1$.
        n_min: $n_{\min}$, the reference count at which 'increase' gives $k_0$.
        n_max: $n_{\max}$, the reference count at which 'decrease' gives $k_0$.

    Returns:
        $k$ as a float (flat mode or int ``n_refs``) or a float tensor shaped like ``n_refs``.

    Raises:
        ValueError: unknown ``k_mode``, missing ``n_refs``, ``n_refs < 1``, or a $k \le 0$
            (the sigmoid would stop being increasing in the similarity).
    """
    if k_mode not in _K_MODES:
        raise ValueError(f"k_mode must be one of {_K_MODES}, got {k_mode!r}")
    if k_mode == "flat":
        k: Tensor | float = float(k0)
    else:
        if n_refs is None:
            raise ValueError(
                f"n_refs is required for k_mode={k_mode!r} (k depends on the number of "
                "references); pass it, or use k_mode='flat'"
            )
        if isinstance(n_refs, Tensor):
            if n_refs.is_floating_point() or n_refs.dtype == torch.bool:
                raise TypeError(f"n_refs must hold integers, got dtype {n_refs.dtype}")
            if bool((n_refs < 1).any()):
                raise ValueError(f"n_refs must be >= 1, got min {int(n_refs.min())}")
        elif isinstance(n_refs, bool) or not isinstance(n_refs, int) or n_refs < 1:
            raise ValueError(f"n_refs must be an int >= 1 or an integer tensor, got {n_refs!r}")
        offset = (n_refs - n_min) if k_mode == "increase" else (n_max - n_refs)
        k = k0 + k1 * offset
    smallest = float(k.min()) if isinstance(k, Tensor) else k
    if smallest <= 0:
        raise ValueError(
            f"k_mode={k_mode!r} with k0={k0}, k1={k1}, n_min={n_min}, n_max={n_max} gives a "
            f"non-positive steepness k={smallest} for these n_refs; expected k > 0"
        )
    return k


def drs_scale(
    similarity: Tensor,
    n_refs: Tensor | int | None = None,
    *,
    tau: float = 0.65,
    k_mode: str = "increase",
    k0: float = 10.0,
    k1: float = 3.0,
    n_min: int = 2,
    n_max: int = 6,
) -> Tensor:
    r"""DRS: squash a similarity through a sigmoid centred at $\tau$ whose steepness grows with $n$.

    $$
    \operatorname{DRS}(s) = \sigma\big(k(n)\,(s - \tau)\big),\qquad
    \sigma(z) = \frac{1}{1 + e^{-z}}
    $$

    with $k(n)$ from [`drs_steepness`][rewardkit.drs_steepness]. Apply it per target image,
    *before* reducing over targets. The sigmoid stretches differences near $\tau$ and compresses
    the tails, so after group normalisation rollouts close to the threshold are separated more
    sharply; a steeper
    $k$ for more references (``"increase"``) compensates for similarities that bunch together
    as the composition gets harder. DRS preserves rankings.

    Args:
        similarity: `(N, ...)` similarity $s$ (e.g. cosine to the ground-truth target).
        n_refs: number of references per sample: an int, or an integer tensor of shape `(N,)`
            (broadcast over the trailing dims of ``similarity``). Not needed for ``"flat"``.
        tau: threshold $\tau$, where the output is 0.5.
        k_mode: ``"increase"``, ``"decrease"`` or ``"flat"``.
        k0: base steepness $k_0$.
        k1: steepness added per reference $k_1$.
        n_min: $n_{\min}$ of ``"increase"``.
        n_max: $n_{\max}$ of ``"decrease"``.

    Returns:
        Scaled rewards in (0, 1), same shape and dtype as ``similarity``; differentiable.

    Raises:
        ValueError: NaN similarity, unknown ``k_mode``, missing or mis-shaped ``n_refs``.
        TypeError: non-float similarity.

    Example:
        >>> import torch, rewardkit
        >>> rewardkit.drs_scale(torch.tensor([0.55, 0.65, 0.75]), torch.tensor([2, 2, 6]))
        tensor([0.2689, 0.5000, 0.9002])

    References:
        DyRef (arXiv 2606.26947), discriminative reward scaling; Flow-Factory
        ``rewards/image_similarity.py`` (``is_inter_group_dis``, ``k_mode``).
    """
    check_float_tensor("similarity", similarity)
    check_no_nan("similarity", similarity, allow_inf=True)
    k = drs_steepness(n_refs, k_mode=k_mode, k0=k0, k1=k1, n_min=n_min, n_max=n_max)
    dtype = compute_dtype(similarity)
    if isinstance(k, Tensor):
        if similarity.ndim == 0 or k.ndim != 1 or k.shape[0] != similarity.shape[0]:
            raise ValueError(
                f"n_refs as a tensor must be (N,) with N = similarity.shape[0]; got n_refs shape "
                f"{tuple(k.shape)} for similarity shape {tuple(similarity.shape)}"
            )
        k = k.to(device=similarity.device, dtype=dtype).reshape(-1, *([1] * (similarity.ndim - 1)))
    scaled = torch.sigmoid(k * (similarity.to(dtype) - tau))
    return scaled.to(similarity.dtype)
