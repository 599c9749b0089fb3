import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

from rewardkit.core.flow_matching import (
    bell_timestep_weights,
    flow_matching_loss,
    noisy_latents,
    sample_timesteps,
    training_sigmas,
)
from rewardkit.core.schedules import flux2_empirical_mu


def test_qwen_training_grid_quantiles_match_the_spec() -> None:
    # Qwen-Image grid (mu = 0.8, terminal 0.02) has 10/50/90% quantiles 0.214 / 0.696 / 0.953.
    sigmas = training_sigmas(0.8, shift_terminal=0.02)
    assert sigmas.shape == (1000,) and float(sigmas[0]) == 1.0
    assert float(sigmas[-1]) == pytest.approx(0.02)
    q = torch.quantile(sigmas, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
    torch.testing.assert_close(q, torch.tensor([0.214, 0.696, 0.953], dtype=torch.float64), atol=2e-3, rtol=0)


def test_flux2_training_grid_is_skewed_to_low_noise() -> None:
    mu = flux2_empirical_mu(4096, 1000)
    assert mu == pytest.approx(-3.508, abs=1e-3)
    sigmas = training_sigmas(mu)
    assert float(sigmas.median()) == pytest.approx(0.029, abs=2e-3)
    assert float(torch.quantile(sigmas, 0.9)) <= 0.214


def test_bell_weights_mean_one_zero_at_extreme_and_peak_at_500() -> None:
    sigmas = training_sigmas(0.0)  # linear grid 1 … 0.001
    w = bell_timestep_weights(sigmas)
    assert float(w.mean()) == pytest.approx(1.0)
    assert float(w.min()) == 0.0 and float(w[0]) == 0.0  # t = 1000 is the farthest from 500
    peak = int(torch.argmax(w))
    assert abs(1000 * float(sigmas[peak]) - 500) <= 1.0
    # By hand at one point: y = exp(-2 ((t-500)/1000)^2).
    y = torch.exp(-2 * ((1000 * sigmas - 500) / 1000) ** 2)
    torch.testing.assert_close(w[10], (y[10] - y.min()) * 1000 / (y - y.min()).sum())


@given(st.integers(1, 64), st.floats(0.0, 0.9), st.integers(0, 2**31))
def test_timestep_indices_stay_in_bounds(batch, lo, seed) -> None:
    idx = sample_timesteps(
        batch, 1000, min_boundary=lo, max_boundary=1.0, generator=torch.Generator().manual_seed(seed)
    )
    assert idx.shape == (batch,) and idx.dtype == torch.int64
    assert int(idx.min()) >= int(lo * 1000) and int(idx.max()) <= 999


@given(st.floats(0.0, 1.0), st.integers(0, 99))
def test_noisy_latents_interpolate(sigma, seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    x0, eps = (
        torch.randn(2, 4, 3, generator=gen, dtype=torch.float64),
        torch.randn(2, 4, 3, generator=gen, dtype=torch.float64),
    )
    x = noisy_latents(x0, eps, sigma)
    torch.testing.assert_close(x, (1 - sigma) * x0 + sigma * eps)
    torch.testing.assert_close(noisy_latents(x0, eps, 0.0), x0)
    torch.testing.assert_close(noisy_latents(x0, eps, 1.0), eps)
    per_sample = noisy_latents(x0, eps, torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(per_sample, torch.stack([x0[0], eps[1]]))


def test_loss_is_zero_at_the_target_and_weighted_mse_elsewhere() -> None:
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 5, 2, generator=gen), torch.randn(3, 5, 2, generator=gen)
    assert float(flow_matching_loss(eps - x0, x0, eps)) == 0.0
    v = torch.zeros(3, 5, 2, requires_grad=True)
    w = torch.tensor([1.0, 0.0, 2.0])
    loss = flow_matching_loss(v, x0, eps, w)
    per = (eps - x0).square().mean(dim=(1, 2))
    torch.testing.assert_close(loss, (per * w).mean())
    loss.backward()
    torch.testing.assert_close(v.grad[1], torch.zeros(5, 2))  # weight 0 → no gradient


def test_gradcheck_and_bf16() -> None:
    x0 = torch.randn(2, 3, dtype=torch.float64)
    eps = torch.randn(2, 3, dtype=torch.float64)
    v = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: flow_matching_loss(t, x0, eps), (v,))
    assert flow_matching_loss(v.detach().bfloat16(), x0.bfloat16(), eps.bfloat16()).dtype == torch.float32


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: flow_matching_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 3)), "share a"),
        (
            lambda: flow_matching_loss(
                torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(3)
            ),
            r"weights must be \(B,\)",
        ),
        (
            lambda: noisy_latents(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(3)),
            r"sigma as a tensor must be \(B,\)",
        ),
        (
            lambda: sample_timesteps(2, 1000, min_boundary=0.5, max_boundary=0.5),
            "min_boundary < max_boundary",
        ),
        (lambda: bell_timestep_weights(torch.ones(1, dtype=torch.float64)), "at least 2"),
    ],
)
def test_bad_input(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()
