import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

import rewardkit
from tests.core import reference

LOGP = st.floats(-5e-4, 5e-4, allow_nan=False)
ADV = st.floats(-8.0, 8.0, allow_nan=False)
CLIP = st.one_of(st.floats(1e-5, 0.5), st.tuples(st.floats(-0.5, 0.0), st.floats(0.0, 0.5)))


@st.composite
def batch(draw: st.DrawFn) -> tuple[list[float], list[float], list[float], list[float]]:
    n = draw(st.integers(1, 12))
    lists = [draw(st.lists(s, min_size=n, max_size=n)) for s in (LOGP, LOGP, ADV)]
    weights = draw(st.lists(st.floats(0.0, 5.0), min_size=n, max_size=n))
    return (*lists, weights)


@given(
    batch(),
    CLIP,
    st.one_of(st.floats(0.1, 10.0), st.tuples(st.floats(-10, 0), st.floats(0, 10))),
    st.booleans(),
)
def test_policy_loss_matches_float64_loop(data, clip, adv_clip, weighted) -> None:
    lp, old, adv, w = data
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    loss, _ = rewardkit.clipped_policy_loss(
        t(lp), t(old), t(adv), clip_range=clip, adv_clip=adv_clip, weights=t(w) if weighted else None
    )
    pair = lambda c: (-abs(c), abs(c)) if isinstance(c, float) else c  # noqa: E731
    want = reference.clipped_policy_loss(lp, old, adv, pair(clip), pair(adv_clip), w if weighted else None)
    assert float(loss) == pytest.approx(want, rel=1e-12, abs=1e-15)


@given(batch())
def test_zero_advantages_give_zero_gradient(data) -> None:
    lp, old, _, w = data
    log_prob = torch.tensor(lp, dtype=torch.float64, requires_grad=True)
    loss, _ = rewardkit.clipped_policy_loss(
        log_prob,
        torch.tensor(old, dtype=torch.float64),
        torch.zeros(len(lp), dtype=torch.float64),
        weights=torch.tensor(w, dtype=torch.float64),
    )
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert torch.equal(log_prob.grad, torch.zeros_like(log_prob))


@given(batch())
def test_at_ratio_one_loss_is_minus_weighted_mean_advantage(data) -> None:
    lp, _, adv, w = data
    log_prob = torch.tensor(lp, dtype=torch.float64, requires_grad=True)
    a = torch.tensor(adv, dtype=torch.float64)
    weights = torch.tensor(w, dtype=torch.float64)
    loss, stats = rewardkit.clipped_policy_loss(log_prob, log_prob.detach().clone(), a, weights=weights)
    clipped = a.clamp(-5, 5)
    assert float(loss.detach()) == pytest.approx(float(-(weights * clipped).mean()), rel=1e-12, abs=1e-15)
    assert float(stats.ratio_mean) == 1.0 and float(stats.clip_frac) == 0.0
    loss.backward()
    # d/dl exp(l - l_old) = 1 at ratio 1: the gradient is the weighted advantage.
    torch.testing.assert_close(log_prob.grad, -(weights * clipped) / len(lp))


def test_clipping_zeroes_gradient_outside_trust_region() -> None:
    # ratio = e^{0.01} > 1 + 1e-4 with A > 0 -> clipped (no gradient); with A < 0 -> unclipped.
    log_prob = torch.tensor([0.01, 0.01, -0.01, -0.01], dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    loss, stats = rewardkit.clipped_policy_loss(log_prob, torch.zeros(4, dtype=torch.float64), adv)
    loss.backward()
    r = math.exp(0.01)
    expected_grad = torch.tensor([0.0, r, -1 / r, 0.0], dtype=torch.float64) / 4
    torch.testing.assert_close(log_prob.grad, expected_grad)
    assert float(stats.clip_frac) == 0.5
    assert float(stats.clip_frac_high) == 0.25 and float(stats.clip_frac_low) == 0.25


def test_advantage_clip_and_asymmetric_ranges() -> None:
    lp = torch.zeros(3)
    loss, stats = rewardkit.clipped_policy_loss(
        lp, lp, torch.tensor([10.0, -10.0, 1.0]), adv_clip=(-2.0, 3.0)
    )
    assert float(loss) == pytest.approx(-(3.0 - 2.0 + 1.0) / 3)
    assert float(stats.adv_clip_frac) == pytest.approx(2 / 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_policy_loss_dtypes_and_2d(dtype) -> None:
    lp = (torch.randn(4, 3, generator=torch.Generator().manual_seed(0)) * 1e-4).to(dtype).requires_grad_()
    adv = torch.tensor([1.0, -1.0, 0.5, 2.0], dtype=dtype)  # (B,) broadcast over T
    loss, stats = rewardkit.clipped_policy_loss(lp, lp.detach(), adv, weights=torch.ones(4, dtype=dtype))
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert loss.ndim == 0 and stats.ratio_mean.ndim == 0
    loss.backward()
    assert lp.grad is not None and lp.grad.dtype == dtype


def test_policy_loss_gradcheck() -> None:
    lp = torch.tensor([1e-5, -2e-5, 3e-5], dtype=torch.float64, requires_grad=True)
    old = torch.zeros(3, dtype=torch.float64)
    adv = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: rewardkit.clipped_policy_loss(x, old, adv)[0], (lp,))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"old_log_prob": torch.zeros(3)}, ValueError, "old_log_prob must have the shape"),
        ({"advantages": torch.zeros(3)}, ValueError, "advantages must have the shape"),
        ({"weights": torch.ones(5)}, ValueError, "weights must have the shape"),
        ({"clip_range": (0.1, -0.1)}, ValueError, "clip_range as a pair must satisfy"),
        ({"clip_range": (-1.5, 0.1)}, ValueError, "clip_range lower bound must be > -1"),
        ({"adv_clip": "big"}, TypeError, "adv_clip must be a number"),
        ({"advantages": torch.tensor([0.0, math.nan])}, ValueError, "advantages contains 1 NaN"),
        ({"log_prob": torch.tensor([0, 0])}, TypeError, "floating-point"),
    ],
)
def test_policy_loss_bad_input(kwargs, error, match) -> None:
    args = {"log_prob": torch.zeros(2), "old_log_prob": torch.zeros(2), "advantages": torch.zeros(2)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        rewardkit.clipped_policy_loss(**args)


@given(st.integers(0, 10_000), st.floats(0.01, 0.5))
def test_ratio_outside_frac_is_flow_grpos_clipfrac(seed: int, clip: float) -> None:
    g = torch.Generator().manual_seed(seed)
    log_prob, old = torch.randn(32, generator=g) * 0.3, torch.randn(32, generator=g) * 0.3
    adv = torch.randn(32, generator=g)
    _, stats = rewardkit.clipped_policy_loss(log_prob, old, adv, clip_range=clip)
    ratio = torch.exp(log_prob - old)
    flow_grpo_clipfrac = float(((ratio - 1.0).abs() > clip).float().mean())
    assert float(stats.ratio_outside_frac) == pytest.approx(flow_grpo_clipfrac, abs=1e-6)
    assert float(stats.clip_frac) <= float(stats.ratio_outside_frac) + 1e-7  # only one side clips
