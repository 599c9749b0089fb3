r"""Supervised flow-matching (Stage I / SFT): noising, timestep grid and weights, and the loss.

Conventions (docs: The math, Conventions): $x_\sigma = (1-\sigma)\,x_0 + \sigma\,\varepsilon$ and the
model predicts the velocity $v = \varepsilon - x_0$. Training draws a uniform index into a
fixed, shifted grid of ``num_train_timesteps`` sigmas, as DiffSynth's ``FlowMatchScheduler``
does, and may weight each timestep with a bell curve centred on $t = 500$.
"""

import math

import torch
from torch import Tensor

from rewardkit.core._checks import check_float_tensor, compute_dtype
from rewardkit.core.schedules import exponential_shift_sigmas

__all__ = [
    "bell_timestep_weights",
    "flow_matching_loss",
    "noisy_latents",
    "sample_timesteps",
    "training_sigmas",
]


def training_sigmas(
    mu: float, *, shift_terminal: float | None = None, num_train_timesteps: int = 1000
) -> Tensor:
    r"""The SFT sigma grid: ``num_train_timesteps`` exponentially shifted values from 1 down.

    $$
    s_j = 1 - j/T\ (j = 0\dots T-1),\qquad
    \sigma_j = \frac{e^{\mu}}{e^{\mu} + (1/s_j - 1)}
    $$

    then stretched to end at ``shift_terminal`` if given (the sampling schedule of
    [`exponential_shift_sigmas`][rewardkit.exponential_shift_sigmas] with $T$ steps, without
    its terminal 0). Reference defaults: Qwen-Image $\mu = 0.8$, ``shift_terminal=0.02``;
    FLUX.2 $\mu$ = ``flux2_empirical_mu(4096, 1000)`` ≈ −3.508, which puts most mass at low
    noise (a DiffSynth quirk; choose explicitly).

    Returns:
        `(T,)` float64 sigmas, decreasing from 1.
    """
    return exponential_shift_sigmas(num_train_timesteps, mu, shift_terminal=shift_terminal)[:-1]


def bell_timestep_weights(sigmas: Tensor) -> Tensor:
    r"""DiffSynth's bell-shaped timestep weights, normalised to mean 1 over the grid.

    $$
    y_j = \exp\!\Big(-2\Big(\frac{t_j - 500}{1000}\Big)^2\Big),\quad t_j = 1000\,\sigma_j,\qquad
    w_j = \frac{(y_j - \min y)\,T}{\sum_{j'} (y_{j'} - \min y)}
    $$

    The extreme timestep gets weight 0.

    Args:
        sigmas: `(T,)` training grid from [`training_sigmas`][rewardkit.core.flow_matching.training_sigmas].

    Returns:
        `(T,)` float64 weights with mean 1.
    """
    check_float_tensor("sigmas", sigmas, ndim=1)
    if sigmas.shape[0] < 2:
        raise ValueError(f"sigmas needs at least 2 values to normalise the weights, got {sigmas.shape[0]}")
    t = 1000.0 * sigmas.double()
    y = torch.exp(-2.0 * ((t - 500.0) / 1000.0) ** 2)
    shifted = y - y.min()
    total = shifted.sum()
    if float(total) == 0.0:
        return torch.ones_like(shifted)
    return shifted * sigmas.shape[0] / total


def sample_timesteps(
    batch_size: int,
    num_train_timesteps: int = 1000,
    *,
    min_boundary: float = 0.0,
    max_boundary: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Uniform grid indices $j \sim \mathcal U\{\lfloor b_{lo}T\rfloor, …, \lfloor b_{hi}T\rfloor - 1\}$.

    Args:
        batch_size: number of indices.
        num_train_timesteps: grid size $T$.
        min_boundary: $b_{lo} \in [0, 1)$.
        max_boundary: $b_{hi} \in (b_{lo}, 1]$.
        generator: explicit randomness.

    Returns:
        `(batch_size,)` int64 indices into the grid.
    """
    if not 0.0 <= min_boundary < max_boundary <= 1.0:
        raise ValueError(f"need 0 <= min_boundary < max_boundary <= 1, got {min_boundary}, {max_boundary}")
    lo, hi = math.floor(min_boundary * num_train_timesteps), math.floor(max_boundary * num_train_timesteps)
    if hi <= lo:
        raise ValueError(f"the boundaries leave no timestep of the {num_train_timesteps}-step grid")
    return torch.randint(lo, hi, (batch_size,), generator=generator)


def noisy_latents(x0: Tensor, noise: Tensor, sigma: Tensor | float) -> Tensor:
    r"""$x_\sigma = (1-\sigma)\,x_0 + \sigma\,\varepsilon$ with a scalar or per-sample `(B,)` σ."""
    check_float_tensor("x0", x0)
    check_float_tensor("noise", noise)
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
    s = torch.as_tensor(sigma, dtype=x0.dtype, device=x0.device)
    if s.ndim == 1:
        if s.shape[0] != x0.shape[0]:
            raise ValueError(f"sigma as a tensor must be (B,) with B={x0.shape[0]}, got {tuple(s.shape)}")
        s = s.reshape(-1, *([1] * (x0.ndim - 1)))
    return (1 - s) * x0 + s * noise


def flow_matching_loss(velocity: Tensor, x0: Tensor, noise: Tensor, weights: Tensor | None = None) -> Tensor:
    r"""Weighted flow-matching MSE against the velocity target $\varepsilon - x_0$.

    $$
    L = \frac{1}{B}\sum_b w_b \cdot \frac{1}{D}\sum_d \big(v_\theta - (\varepsilon - x_0)\big)_{b,d}^2
    $$

    Args:
        velocity: `(B, ...)` predicted velocity $v_\theta(x_\sigma, \sigma)$.
        x0: `(B, ...)` clean latents.
        noise: `(B, ...)` the noise $\varepsilon$ used to make $x_\sigma$.
        weights: optional `(B,)` per-sample timestep weights $w_b$ (1 when None).

    Returns:
        Scalar loss (float32, or float64 for float64 input).
    """
    check_float_tensor("velocity", velocity)
    if not (velocity.shape == x0.shape == noise.shape) or velocity.ndim < 2:
        raise ValueError(
            f"velocity, x0 and noise must share a (B, ...) shape, got {tuple(velocity.shape)}, "
            f"{tuple(x0.shape)}, {tuple(noise.shape)}"
        )
    dtype = compute_dtype(velocity, x0, noise)
    target = noise.detach().to(dtype) - x0.detach().to(dtype)
    per_sample = (velocity.to(dtype) - target).square().flatten(1).mean(dim=1)
    if weights is not None:
        check_float_tensor("weights", weights, ndim=1)
        if weights.shape[0] != per_sample.shape[0]:
            raise ValueError(f"weights must be (B,) with B={per_sample.shape[0]}, got {tuple(weights.shape)}")
        per_sample = per_sample * weights.detach().to(dtype)
    return per_sample.mean()
