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

Each takes either tensors, or two [`SDELogProb`][rewardkit.SDELogProb] of the same stored step
(the trained policy's and the reference policy's, from
[`SDEConfig.log_prob`][rewardkit.SDEConfig.log_prob]): then the means, velocities and σ_t
come from the step and the KL is one call, ``kl_x_based(new, ref)``.
"""

import torch
from torch import Tensor

from rewardkit.core._checks import check_float_tensor, check_nonnegative, compute_dtype
from rewardkit.core.sde import SDELogProb

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


def _steps(
    policy: SDELogProb, reference: object, given: object, given_name: str
) -> tuple[SDELogProb, Tensor]:
    """Check a (policy, reference) pair of step evaluations; their shared σ_t."""
    if not isinstance(reference, SDELogProb):
        raise TypeError(
            f"the policy is an SDELogProb, so the reference must be one too (the reference policy's "
            f"SDEConfig.log_prob of the same step), got {type(reference).__name__}"
        )
    if given is not None:
        raise ValueError(f"{given_name} comes from the steps; do not pass it with SDELogProb arguments")
    if policy.sigma_t.shape != reference.sigma_t.shape or not torch.allclose(
        policy.sigma_t, reference.sigma_t.to(policy.sigma_t.dtype)
    ):
        raise ValueError(
            "policy and reference are different steps (their sigma_t differ): evaluate the "
            "reference policy on the same stored step with the same SDEConfig"
        )
    if not bool((policy.sigma_t > 0).all()):
        raise ValueError("a KL needs a stochastic step (sigma_t > 0): kind 'ode' or noise_level 0 has none")
    return reference, policy.sigma_t


def _sq_over_sigma_t(
    trained: tuple[str, Tensor], ref: tuple[str, Tensor], std_dev_t: Tensor | float, eps: float
) -> Tensor:
    r"""The reference code's shared form: mean squared difference over $2\sigma_t^2 + \epsilon$."""
    sq, batch = _mean_sq_diff(*trained, *ref)
    std = _per_sample("std_dev_t", std_dev_t, batch, sq)
    return (sq / (2 * std.square() + check_nonnegative("eps", eps))).squeeze(1)


def kl_v_based(
    velocity: Tensor | SDELogProb,
    ref_velocity: Tensor | SDELogProb,
    std_dev_t: Tensor | float | None = None,
    *,
    eps: float = 1e-7,
) -> Tensor:
    r"""'v-based' KL surrogate of Flow-Factory (DyRef's choice): a weighted velocity L2.

    $$
    \mathrm{KL}_v = \frac{1}{D}\sum_{d} \frac{(v_\theta - v_{ref})_d^2}{2\sigma_t^2 + \epsilon}
    $$

    Args:
        velocity: `(B, ...)` velocity $v_\theta$ of the trained policy (carries the gradient),
            or its [`SDELogProb`][rewardkit.SDELogProb].
        ref_velocity: `(B, ...)` velocity $v_{ref}$ of the reference policy (constant), or its
            ``SDELogProb`` of the same step.
        std_dev_t: $\sigma_t$ (Flow-SDE's diffusion coefficient, *without* $\sqrt{|\Delta t|}$),
            a float or a `(B,)` tensor; taken from the steps when they are given.
        eps: $\epsilon \ge 0$ added to the denominator.

    Returns:
        `(B,)` per-sample values (float32, or float64 for float64 input).

    References:
        Flow-Factory ``trainers/grpo.py`` (``kl_type='v-based'``).
    """
    if isinstance(velocity, SDELogProb):
        ref, std_dev_t = _steps(velocity, ref_velocity, std_dev_t, "std_dev_t")
        velocity, ref_velocity = velocity.velocity, ref.velocity
    elif isinstance(ref_velocity, SDELogProb) or std_dev_t is None:
        raise TypeError("pass two SDELogProb, or two velocity tensors and std_dev_t")
    return _sq_over_sigma_t(("velocity", velocity), ("ref_velocity", ref_velocity), std_dev_t, eps)


def kl_x_based(
    mean: Tensor | SDELogProb,
    ref_mean: Tensor | SDELogProb,
    std_dev_t: Tensor | float | None = None,
    *,
    eps: float = 1e-7,
) -> Tensor:
    r"""'x-based' KL of Flow-GRPO: the Gaussian KL of one step times $|\Delta t|$.

    $$
    \mathrm{KL}_x = \frac{1}{D}\sum_{d} \frac{(\mu_\theta - \mu_{ref})_d^2}{2\sigma_t^2 + \epsilon}
    = |\Delta t|\cdot \mathrm{KL}_{exact} \quad (\epsilon = 0)
    $$

    Args:
        mean: `(B, ...)` step mean $\mu_\theta$ of the trained policy (carries the gradient),
            or its [`SDELogProb`][rewardkit.SDELogProb].
        ref_mean: `(B, ...)` step mean $\mu_{ref}$ of the reference policy (constant), or its
            ``SDELogProb`` of the same step.
        std_dev_t: $\sigma_t$ (without $\sqrt{|\Delta t|}$: *not* ``SDEStep.noise_std``), a float
            or a `(B,)` tensor; taken from the steps when they are given.
        eps: $\epsilon \ge 0$ added to the denominator.

    Returns:
        `(B,)` per-sample values.

    Example:
        >>> import torch, rewardkit
        >>> sde = rewardkit.SDEConfig.flow_grpo()
        >>> x, x_next, v = torch.zeros(1, 8), torch.full((1, 8), 0.1), torch.ones(1, 8)
        >>> new = sde.log_prob(x_next=x_next, x=x, velocity=v, sigma=0.8, sigma_next=0.7)
        >>> ref = sde.log_prob(x_next=x_next, x=x, velocity=v + 0.5, sigma=0.8, sigma_next=0.7)
        >>> by_hand = rewardkit.kl_x_based(new.mean, ref.mean, new.sigma_t)
        >>> torch.allclose(rewardkit.kl_x_based(new, ref), by_hand)
        True

    References:
        Liu et al., *Flow-GRPO*, 2025 (``kl_loss``); Flow-Factory ``kl_type='x-based'``.
    """
    if isinstance(mean, SDELogProb):
        ref, std_dev_t = _steps(mean, ref_mean, std_dev_t, "std_dev_t")
        mean, ref_mean = mean.mean, ref.mean
    elif isinstance(ref_mean, SDELogProb) or std_dev_t is None:
        raise TypeError("pass two SDELogProb, or two mean tensors and std_dev_t")
    return _sq_over_sigma_t(("mean", mean), ("ref_mean", ref_mean), std_dev_t, eps)


def kl_gaussian(
    mean: Tensor | SDELogProb, ref_mean: Tensor | SDELogProb, noise_std: Tensor | float | None = None
) -> Tensor:
    r"""Exact per-element KL between the two Gaussian step distributions (equal variances).

    $$
    \mathrm{KL}\big(\mathcal N(\mu_\theta, s^2)\,\|\,\mathcal N(\mu_{ref}, s^2)\big)
    = \frac{1}{D}\sum_d \frac{(\mu_\theta - \mu_{ref})_d^2}{2 s^2},\qquad
    s = \sigma_t\sqrt{|\Delta t|}
    $$

    Args:
        mean: `(B, ...)` step mean $\mu_\theta$ (carries the gradient), or the policy's
            [`SDELogProb`][rewardkit.SDELogProb].
        ref_mean: `(B, ...)` step mean $\mu_{ref}$ (constant), or the reference's ``SDELogProb``.
        noise_std: the step's noise std $s$ (``SDEStep.noise_std``), a float or a `(B,)`
            tensor, > 0; taken from the steps when they are given.

    Returns:
        `(B,)` per-sample KL, averaged over elements (the sum over elements is $D$ times it).
    """
    if isinstance(mean, SDELogProb):
        ref, _ = _steps(mean, ref_mean, noise_std, "noise_std")
        noise_std = mean.noise_std
        mean, ref_mean = mean.mean, ref.mean
    elif isinstance(ref_mean, SDELogProb) or noise_std is None:
        raise TypeError("pass two SDELogProb, or two mean tensors and noise_std")
    sq, batch = _mean_sq_diff("mean", mean, "ref_mean", ref_mean)
    s = _per_sample("noise_std", noise_std, batch, sq)
    return (sq / (2 * s.square())).squeeze(1)
