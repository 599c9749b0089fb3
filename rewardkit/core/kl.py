r"""KL regularisers between the trained policy and a reference policy, side by side.

For one SDE step both policies are Gaussians with the same std
$s = \sigma_t\sqrt{|\Delta t|}$ and means $\mu_\theta$, $\mu_{ref}$, so the exact KL per element is
$(\mu_\theta - \mu_{ref})^2 / (2 s^2)$. The reference code uses two cheaper forms:

| function | per-element value | relation to the exact KL |
|---|---|---|
| `kl_gaussian` | $(\Delta\mu)^2 / (2\sigma_t^2\lvert\Delta t\rvert)$ | exact |
| `kl_x_based` | $(\Delta\mu)^2 / (2\sigma_t^2 + \epsilon)$ | exact KL $\times\lvert\Delta t\rvert$ |
| `kl_v_based` | $(\Delta v)^2 / (2\sigma_t^2 + \epsilon)$ | a weighted L2 in velocity space |

All three return one value per sample, the mean over the non-batch dimensions (the same
reduction as the mean-reduced log-probability); average over the batch for the loss term.
"""

import torch
from torch import Tensor

from rewardkit.core._checks import check_float_tensor, check_nonnegative, compute_dtype

__all__ = ["kl_gaussian", "kl_v_based", "kl_x_based"]


def _per_sample(name: str, value: Tensor | float, batch: int, like: Tensor) -> Tensor:
    """A float or `(B,)` tensor as a `(B, 1)` column in the compute dtype."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"{name} must be a float or a (B,) tensor with B={batch}, got {tuple(t.shape)}")
    if bool((t <= 0).any()) or not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite and > 0, got min {float(t.min())}")
    return t.reshape(batch, 1)


def _mean_sq_diff(name: str, a: Tensor, ref_name: str, b: Tensor) -> tuple[Tensor, int]:
    """Per-sample mean of $(a - b)^2$ over the non-batch dims, in float32 at least."""
    check_float_tensor(name, a)
    check_float_tensor(ref_name, b)
    if a.ndim < 2 or a.shape != b.shape:
        raise ValueError(
            f"{name} and {ref_name} must have the same shape (B, ...) with a non-batch dim; "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    dtype = compute_dtype(a, b)
    diff = a.to(dtype) - b.detach().to(dtype)
    return diff.square().flatten(1).mean(dim=1, keepdim=True), a.shape[0]


def _sq_over_sigma_t(
    trained: tuple[str, Tensor], ref: tuple[str, Tensor], std_dev_t: Tensor | float, eps: float
) -> Tensor:
    r"""The reference code's shared form: mean squared difference over $2\sigma_t^2 + \epsilon$."""
    sq, batch = _mean_sq_diff(*trained, *ref)
    std = _per_sample("std_dev_t", std_dev_t, batch, sq)
    return (sq / (2 * std.square() + check_nonnegative("eps", eps))).squeeze(1)


def kl_v_based(
    velocity: Tensor, ref_velocity: Tensor, std_dev_t: Tensor | float, *, eps: float = 1e-7
) -> Tensor:
    r"""'v-based' KL surrogate of Flow-Factory (DyRef's choice): a weighted velocity L2.

    $$
    \mathrm{KL}_v = \frac{1}{D}\sum_{d} \frac{(v_\theta - v_{ref})_d^2}{2\sigma_t^2 + \epsilon}
    $$

    Args:
        velocity: `(B, ...)` velocity $v_\theta$ of the trained policy; carries the gradient.
        ref_velocity: `(B, ...)` velocity $v_{ref}$ of the reference policy (constant).
        std_dev_t: $\sigma_t$ (Flow-SDE's diffusion coefficient, *without* $\sqrt{|\Delta t|}$),
            a float or a `(B,)` tensor.
        eps: $\epsilon \ge 0$ added to the denominator.

    Returns:
        `(B,)` per-sample values (float32, or float64 for float64 input).

    References:
        Flow-Factory ``trainers/grpo.py`` (``kl_type='v-based'``).
    """
    return _sq_over_sigma_t(("velocity", velocity), ("ref_velocity", ref_velocity), std_dev_t, eps)


def kl_x_based(mean: Tensor, ref_mean: Tensor, std_dev_t: Tensor | float, *, eps: float = 1e-7) -> Tensor:
    r"""'x-based' KL of Flow-GRPO: the Gaussian KL of one step times $|\Delta t|$.

    $$
    \mathrm{KL}_x = \frac{1}{D}\sum_{d} \frac{(\mu_\theta - \mu_{ref})_d^2}{2\sigma_t^2 + \epsilon}
    = |\Delta t|\cdot \mathrm{KL}_{exact} \quad (\epsilon = 0)
    $$

    Args:
        mean: `(B, ...)` step mean $\mu_\theta$ of the trained policy; carries the gradient.
        ref_mean: `(B, ...)` step mean $\mu_{ref}$ of the reference policy (constant).
        std_dev_t: $\sigma_t$ (without $\sqrt{|\Delta t|}$), a float or a `(B,)` tensor.
        eps: $\epsilon \ge 0$ added to the denominator.

    Returns:
        `(B,)` per-sample values.

    References:
        Liu et al., *Flow-GRPO*, 2025 (``kl_loss``); Flow-Factory ``kl_type='x-based'``.
    """
    return _sq_over_sigma_t(("mean", mean), ("ref_mean", ref_mean), std_dev_t, eps)


def kl_gaussian(mean: Tensor, ref_mean: Tensor, noise_std: Tensor | float) -> Tensor:
    r"""Exact per-element KL between the two Gaussian step distributions (equal variances).

    $$
    \mathrm{KL}\big(\mathcal N(\mu_\theta, s^2)\,\|\,\mathcal N(\mu_{ref}, s^2)\big)
    = \frac{1}{D}\sum_d \frac{(\mu_\theta - \mu_{ref})_d^2}{2 s^2},\qquad
    s = \sigma_t\sqrt{|\Delta t|}
    $$

    Args:
        mean: `(B, ...)` step mean $\mu_\theta$; carries the gradient.
        ref_mean: `(B, ...)` step mean $\mu_{ref}$ (constant).
        noise_std: the step's noise std $s$ (the ``std`` field of [`sde_step`][rewardkit.sde_step]),
            a float or a `(B,)` tensor, > 0.

    Returns:
        `(B,)` per-sample KL, averaged over elements (the sum over elements is $D$ times it).
    """
    sq, batch = _mean_sq_diff("mean", mean, "ref_mean", ref_mean)
    s = _per_sample("noise_std", noise_std, batch, sq)
    return (sq / (2 * s.square())).squeeze(1)
