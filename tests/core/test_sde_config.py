"""SDEConfig: one SDE description for rollout and training, and the one-call KL."""

import math
import warnings

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

import rewardkit
from rewardkit import SDEConfig


def latents(seed: int, shape: tuple[int, ...] = (3, 5, 4), dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(shape, generator=g, dtype=dtype) for _ in range(3))


def test_rollout_and_training_calls_agree_bit_for_bit() -> None:
    sde = SDEConfig.flow_grpo()
    x, v, _ = latents(0, dtype=torch.float32)
    step = sde.step(x=x, velocity=v, sigma=0.8, sigma_next=0.7, generator=torch.Generator().manual_seed(1))
    new = sde.log_prob(x_next=step.next, x=x, velocity=v, sigma=0.8, sigma_next=0.7)
    assert torch.equal(new.log_prob, step.log_prob)
    torch.testing.assert_close(new.mean, step.mean, rtol=0, atol=0)
    assert torch.equal(new.sigma_t, step.sigma_t) and torch.equal(new.noise_std, step.noise_std)


def test_latents_are_keyword_only_so_they_cannot_be_swapped() -> None:
    sde = SDEConfig.dyref()
    x, v, x_next = latents(1)
    with pytest.raises(TypeError):
        sde.log_prob(x_next, x, v, 0.8, 0.7)  # type: ignore[misc]
    with pytest.raises(TypeError):
        sde.step(x, v, 0.8, 0.7)  # type: ignore[misc]


def test_the_noise_level_has_no_silent_default() -> None:
    with pytest.raises(TypeError, match="noise_level"):
        SDEConfig("flow_sde")  # type: ignore[call-arg]
    x, v, x_next = latents(2)
    with pytest.warns(FutureWarning, match="noise_level not given"):
        rewardkit.sde_log_prob(x_next, x, v, 0.8, 0.7)
    with pytest.warns(FutureWarning, match="Flow-GRPO uses 0.7"):
        rewardkit.sde_step(x, v, 0.8, 0.7, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rewardkit.sde_step(x, v, 0.8, 0.7, kind="ode")  # no noise, nothing to forget
        rewardkit.sde_log_prob(x_next, x, v, 0.8, 0.7, noise_level=0.7)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "sde", "noise_level": 1.0}, "kind must be one of"),
        ({"kind": "flow_sde", "noise_level": -0.1}, "noise_level"),
        ({"kind": "cps", "noise_level": 1.5}, "angle fraction"),
        ({"kind": "flow_sde", "noise_level": 1.0, "sigma_max": 1.0}, "sigma_max"),
        ({"kind": "flow_sde", "noise_level": 1.0, "backend": "cuda"}, "backend must be one of"),
    ],
)
def test_bad_configs_are_refused(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        SDEConfig(**kwargs)


@settings(deadline=None, max_examples=30)
@given(
    st.floats(0.05, 0.95),
    st.floats(0.01, 0.5),
    st.floats(0.1, 1.0),
    st.integers(0, 10_000),
)
def test_kl_in_one_call_is_the_float64_formula(sigma: float, gap: float, a: float, seed: int) -> None:
    sigma_next = max(sigma - gap, 0.0)
    sde = SDEConfig("flow_sde", a)
    x, v, x_next = latents(seed)
    v_ref = v + torch.randn(v.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=v.dtype)
    new = sde.log_prob(x_next=x_next, x=x, velocity=v, sigma=sigma, sigma_next=sigma_next)
    ref = sde.log_prob(x_next=x_next, x=x, velocity=v_ref, sigma=sigma, sigma_next=sigma_next)
    # by hand: σ_t = a √(σ / (1 − σ)), Δμ = c_v Δv with c_v = (1 + σ_t²(1 − σ)/(2σ)) dt
    sigma_t = a * math.sqrt(sigma / (1 - sigma))
    dt = sigma_next - sigma
    c_v = (1 + sigma_t**2 * (1 - sigma) / (2 * sigma)) * dt
    want = ((c_v * (v - v_ref)) ** 2).flatten(1).mean(1) / (2 * sigma_t**2 + 1e-7)
    torch.testing.assert_close(rewardkit.kl_x_based(new, ref), want, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(
        new.sigma_t, torch.full((3,), sigma_t, dtype=torch.float64), rtol=1e-12, atol=0
    )
    torch.testing.assert_close(new.noise_std, new.sigma_t * math.sqrt(-dt), rtol=1e-12, atol=0)
    # x-based = |Δt| × exact (ε → 0); v-based divides the velocity gap by the same σ_t
    exact = rewardkit.kl_gaussian(new, ref)
    torch.testing.assert_close(rewardkit.kl_x_based(new, ref, eps=0.0), -dt * exact, rtol=1e-9, atol=1e-12)
    want_v = ((v - v_ref) ** 2).flatten(1).mean(1) / (2 * sigma_t**2 + 1e-7)
    torch.testing.assert_close(rewardkit.kl_v_based(new, ref), want_v, rtol=1e-9, atol=1e-12)


def test_kl_gradient_flows_to_the_trained_velocity_only() -> None:
    sde = SDEConfig.flow_grpo()
    x, v, x_next = latents(3)
    v = v.clone().requires_grad_(True)
    new = sde.log_prob(x_next=x_next, x=x, velocity=v, sigma=0.6, sigma_next=0.5)
    with torch.no_grad():
        ref = sde.log_prob(x_next=x_next, x=x, velocity=v.detach() * 0.9, sigma=0.6, sigma_next=0.5)
    rewardkit.kl_x_based(new, ref).sum().backward()
    assert v.grad is not None and bool(v.grad.abs().sum() > 0)


def test_kl_refuses_mismatched_steps_and_deterministic_steps() -> None:
    x, v, x_next = latents(4)
    a = SDEConfig.flow_grpo().log_prob(x_next=x_next, x=x, velocity=v, sigma=0.8, sigma_next=0.7)
    b = SDEConfig.flow_grpo().log_prob(x_next=x_next, x=x, velocity=v, sigma=0.6, sigma_next=0.5)
    with pytest.raises(ValueError, match="different steps"):
        rewardkit.kl_x_based(a, b)
    with pytest.raises(TypeError, match="SDELogProb"):
        rewardkit.kl_x_based(a, v)
    with pytest.raises(ValueError, match="comes from the steps"):
        rewardkit.kl_x_based(a, a, 0.5)
    with pytest.raises(TypeError, match="std_dev_t"):
        rewardkit.kl_x_based(v, v)
    ode = SDEConfig("ode", 0.0).log_prob(x_next=x_next, x=x, velocity=v, sigma=0.8, sigma_next=0.7)
    with pytest.raises(ValueError, match="stochastic step"):
        rewardkit.kl_x_based(ode, ode)


def test_step_std_is_a_deprecated_alias_of_noise_std() -> None:
    x, v, _ = latents(5)
    step = SDEConfig.dyref().step(x=x, velocity=v, sigma=0.5, sigma_next=0.4, generator=torch.Generator())
    with pytest.warns(DeprecationWarning, match="noise_std"):
        assert torch.equal(step.std, step.noise_std)
