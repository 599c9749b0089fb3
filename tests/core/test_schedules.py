"""Sigma schedules and the SDE window: the spec's worked numbers, properties and bad input."""

import math
from types import SimpleNamespace

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

import rewardkit
from rewardkit.core.schedules import exponential_shift_sigmas, sd3_sigmas, sigmas_from_scheduler

# Worked numbers of the reference formulas (4 decimals).
QWEN_512_N10 = [1.0, 0.929, 0.8515, 0.7666, 0.6733, 0.5701, 0.4555, 0.3274, 0.1833, 0.02, 0.0]
FLUX2_512_N10 = [1.0, 0.985, 0.9669, 0.9445, 0.9163, 0.8795, 0.8295, 0.7578, 0.646, 0.4478, 0.0]


def test_qwen_mu_matches_spec() -> None:
    assert rewardkit.qwen_image_mu(1024) == pytest.approx(0.53871, abs=5e-6)  # 512²
    assert rewardkit.qwen_image_mu(4096) == pytest.approx(0.69355, abs=5e-6)  # 1024²
    # The line passes through its two anchor points.
    assert rewardkit.qwen_image_mu(256) == pytest.approx(0.5, abs=1e-12)
    assert rewardkit.qwen_image_mu(8192) == pytest.approx(0.9, abs=1e-12)


def test_flux2_mu_matches_spec_and_both_branches() -> None:
    assert rewardkit.flux2_empirical_mu(1024, 10) == pytest.approx(1.98781, abs=5e-6)
    assert rewardkit.flux2_empirical_mu(1024, 20) == pytest.approx(1.91635, abs=5e-6)
    # Above 4300 tokens μ is linear in L only, independent of the step count.
    big = rewardkit.flux2_empirical_mu(16384, 10)
    assert big == pytest.approx(0.00016927 * 16384 + 0.45666666, abs=1e-12)
    assert rewardkit.flux2_empirical_mu(16384, 50) == big
    # The fitted line interpolates its 10- and 200-step anchors.
    assert rewardkit.flux2_empirical_mu(2000, 10) == pytest.approx(8.73809524e-05 * 2000 + 1.89833333)
    assert rewardkit.flux2_empirical_mu(2000, 200) == pytest.approx(0.00016927 * 2000 + 0.45666666)


def test_qwen_schedule_512_n10_matches_spec() -> None:
    sigmas = rewardkit.qwen_image_sigmas(10, 1024)
    assert sigmas.dtype == torch.float64 and sigmas.shape == (11,)
    torch.testing.assert_close(sigmas, torch.tensor(QWEN_512_N10, dtype=torch.float64), atol=5e-5, rtol=0)
    assert float(sigmas[0]) == 1.0 and float(sigmas[-1]) == 0.0
    assert float(sigmas[-2]) == pytest.approx(0.02, abs=1e-15)  # shift_terminal hit exactly


def test_flux2_schedule_512_n10_matches_spec() -> None:
    sigmas = rewardkit.flux2_sigmas(10, 1024)
    torch.testing.assert_close(sigmas, torch.tensor(FLUX2_512_N10, dtype=torch.float64), atol=5e-5, rtol=0)


def test_unshifted_schedule_is_linear() -> None:
    assert torch.equal(
        exponential_shift_sigmas(4, 0.0), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64)
    )
    assert exponential_shift_sigmas(3, 0.0, dtype=torch.float32).dtype == torch.float32


@given(
    n=st.integers(1, 60),
    mu=st.floats(-3.0, 3.0),
    tau=st.one_of(st.none(), st.floats(0.001, 0.9)),
)
def test_schedule_properties(n: int, mu: float, tau: float | None) -> None:
    if tau is not None and n < 2:
        with pytest.raises(ValueError, match="num_steps >= 2"):
            exponential_shift_sigmas(n, mu, shift_terminal=tau)
        return
    sigmas = exponential_shift_sigmas(n, mu, shift_terminal=tau)
    assert sigmas.shape == (n + 1,)
    assert float(sigmas[0]) == pytest.approx(1.0, abs=1e-12) and float(sigmas[-1]) == 0.0
    assert bool((sigmas[1:] < sigmas[:-1]).all())  # strictly decreasing
    # Each value is the exponential shift of s = linspace(1, 1/N, N), optionally stretched.
    i = n // 2
    s = 1.0 - i * (1.0 - 1.0 / n) / max(n - 1, 1)
    want = math.exp(mu) / (math.exp(mu) + (1.0 / s - 1.0))
    if tau is not None:
        last = math.exp(mu) / (math.exp(mu) + (n - 1.0))
        want = 1.0 - (1.0 - want) * (1.0 - tau) / (1.0 - last)
        assert float(sigmas[-2]) == pytest.approx(tau, abs=1e-12)
    assert float(sigmas[i]) == pytest.approx(want, abs=1e-12)


def test_sde_window_follows_the_seeded_randperm_draw() -> None:
    steps = [1, 2, 3]
    for epoch in range(5):
        gen = torch.Generator().manual_seed(epoch + 42)
        want = torch.tensor(steps)[torch.randperm(3, generator=gen)[:1]]
        assert torch.equal(rewardkit.sde_window(10, epoch=epoch, train_steps=steps), want)


def test_sde_window_defaults_and_properties() -> None:
    state = torch.get_rng_state()
    draws = [rewardkit.sde_window(10, epoch=e, num_train_steps=3) for e in range(20)]
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not touched
    for w in draws:
        assert w.dtype == torch.int64 and w.shape == (3,)
        assert bool((w[1:] > w[:-1]).all())  # sorted, no repeats
        assert int(w.min()) >= 0 and int(w.max()) <= 8  # default candidates 0 … N-2
    assert len({tuple(w.tolist()) for w in draws}) > 1  # the draw changes with the epoch
    # Same (epoch, seed) → same window (every rank agrees); another seed may differ.
    assert torch.equal(rewardkit.sde_window(10, epoch=7, seed=3), rewardkit.sde_window(10, epoch=7, seed=3))
    # Asking for at least as many steps as there are candidates takes them all.
    assert rewardkit.sde_window(10, epoch=0, train_steps=[3, 1, 2], num_train_steps=5).tolist() == [1, 2, 3]
    assert rewardkit.sde_window(10, epoch=0, num_train_steps=100).tolist() == list(range(9))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: exponential_shift_sigmas(0, 0.5), ValueError, "num_steps must be >= 1"),
        (lambda: exponential_shift_sigmas(True, 0.5), TypeError, "num_steps must be an int"),
        (lambda: exponential_shift_sigmas(10, math.inf), ValueError, "mu must be finite"),
        (
            lambda: exponential_shift_sigmas(10, 0.5, shift_terminal=1.0),
            ValueError,
            r"shift_terminal must lie in \(0, 1\)",
        ),
        (lambda: exponential_shift_sigmas(10, 0.5, dtype=torch.int64), TypeError, "floating-point dtype"),
        (lambda: rewardkit.qwen_image_mu(0), ValueError, "image_seq_len must be >= 1"),
        (lambda: rewardkit.qwen_image_mu(1024, base_seq_len=8192), ValueError, "must exceed base_seq_len"),
        (lambda: rewardkit.flux2_empirical_mu(1024.0, 10), TypeError, "image_seq_len must be an int"),
        (lambda: rewardkit.sde_window(10, epoch=-1), ValueError, "epoch must be >= 0"),
        (lambda: rewardkit.sde_window(10, epoch=0, train_steps=[]), ValueError, "at least one"),
        (lambda: rewardkit.sde_window(10, epoch=0, train_steps=[10]), ValueError, r"0 … 9"),
        (lambda: rewardkit.sde_window(10, epoch=0, train_steps=[1, 1]), ValueError, "must not repeat"),
        (lambda: rewardkit.sde_window(1, epoch=0), ValueError, "pass train_steps explicitly"),
        (lambda: rewardkit.sde_window(10, epoch=0, num_train_steps=0), ValueError, "num_train_steps"),
    ],
)
def test_bad_input_raises_with_a_useful_message(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 30), seq=st.integers(16, 20000))
def test_convenience_schedules_compose_the_pieces(n: int, seq: int) -> None:
    assert torch.equal(
        rewardkit.qwen_image_sigmas(n, seq),
        exponential_shift_sigmas(n, rewardkit.qwen_image_mu(seq), shift_terminal=0.02),
    )
    assert torch.equal(
        rewardkit.flux2_sigmas(n, seq), exponential_shift_sigmas(n, rewardkit.flux2_empirical_mu(seq, n))
    )


def test_schedules_start_at_exactly_one() -> None:
    # The Flow-SDE step special-cases sigma == 1; a first value of 1 - 1e-16 would blow it up.
    from rewardkit.core.schedules import exponential_shift_sigmas, flux2_sigmas, qwen_image_sigmas

    for n in range(2, 40):
        for seq_len in (16, 64, 256, 1024, 4096):
            assert float(qwen_image_sigmas(n, seq_len)[0]) == 1.0
            assert float(flux2_sigmas(n, seq_len)[0]) == 1.0
        for mu in (-3.5, -1.0, 0.3, 0.8, 1.9):
            assert float(exponential_shift_sigmas(n, mu)[0]) == 1.0


# --- Stable Diffusion 3 (static shift) --------------------------------------------------------


def sd3_reference(n: int, shift: float) -> list[float]:
    """diffusers' static-shift FlowMatchEulerDiscreteScheduler, written out with the math module."""

    def f(s: float) -> float:
        return shift * s / (1.0 + (shift - 1.0) * s)

    s_min = f(1.0 / 1000)  # the constructor's shifted training sigmas end here
    out = []
    for i in range(n):
        s = 1.0 if n == 1 else 1.0 + i * (s_min - 1.0) / (n - 1)  # linspace(1, s_min, n)
        out.append(f(s))  # shifted again by set_timesteps
    return [*out, 0.0]


@given(n=st.integers(1, 200), shift=st.floats(0.05, 50.0))
def test_sd3_schedule_properties_and_reference(n: int, shift: float) -> None:
    sigmas = sd3_sigmas(n, shift=shift)
    assert sigmas.dtype == torch.float64 and sigmas.shape == (n + 1,)
    assert float(sigmas[0]) == 1.0 and float(sigmas[-1]) == 0.0  # exactly, for every shift
    assert bool((sigmas[1:] < sigmas[:-1]).all())
    want = torch.tensor(sd3_reference(n, shift), dtype=torch.float64)
    torch.testing.assert_close(sigmas, want, atol=1e-12, rtol=0)


def test_sd3_schedule_worked_numbers_and_difference_from_exponential_shift() -> None:
    sigmas = sd3_sigmas(10)
    assert float(sigmas[1]) == pytest.approx(0.9601, abs=5e-5)
    # Same map (μ = ln 3) on another grid: linspace(1, 1/N, N) instead of linspace(1, f(1/1000), N).
    assert float(exponential_shift_sigmas(10, math.log(3.0))[1]) == pytest.approx(0.9643, abs=5e-5)
    # The last non-zero sigma is the shift applied twice to 1/1000, independent of N.
    twice = 3 * (0.003 / 1.002) / (1 + 2 * (0.003 / 1.002))
    for n in (2, 10, 28):
        assert float(sd3_sigmas(n)[-2]) == pytest.approx(twice, abs=1e-15)
    # shift = 1 is the unshifted linear grid from 1 to 1/1000.
    torch.testing.assert_close(
        sd3_sigmas(4, shift=1.0), torch.tensor([1.0, 0.667, 0.334, 0.001, 0.0], dtype=torch.float64)
    )
    assert sd3_sigmas(1).tolist() == [1.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_sd3_schedule_honours_dtype(dtype: torch.dtype) -> None:
    sigmas = sd3_sigmas(28, dtype=dtype)
    assert sigmas.dtype == dtype and sigmas.shape == (29,)
    assert float(sigmas[0]) == 1.0 and float(sigmas[-1]) == 0.0
    torch.testing.assert_close(sigmas, sd3_sigmas(28).to(dtype), atol=0, rtol=0)


@pytest.mark.parametrize("shift", [3.0, 1.0, 6.0])
@pytest.mark.parametrize("n", [1, 2, 10, 28, 50])
def test_sd3_schedule_matches_diffusers(n: int, shift: float) -> None:
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift, use_dynamic_shifting=False)
    scheduler.set_timesteps(n)
    ours = sd3_sigmas(n, shift=shift)
    torch.testing.assert_close(scheduler.sigmas.double(), ours, atol=1e-6, rtol=0)
    torch.testing.assert_close(sigmas_from_scheduler(scheduler), ours, atol=1e-6, rtol=0)
    # The timesteps the transformer sees are σ·1000, not the σ that goes to the SDE step.
    torch.testing.assert_close(scheduler.timesteps.double(), ours[:-1] * 1000, atol=1e-3, rtol=0)


def test_sigmas_from_scheduler_refuses_a_diffusers_scheduler_before_set_timesteps() -> None:
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    # Its constructor already holds the 1000 training sigmas; they are not an inference schedule.
    with pytest.raises(ValueError, match=r"set_timesteps\(N\) first"):
        sigmas_from_scheduler(scheduler)


# --- sigmas_from_scheduler ---------------------------------------------------------------------


def test_sigmas_from_scheduler_converts_and_appends_the_terminal_zero() -> None:
    with_zero = SimpleNamespace(sigmas=torch.tensor([1.0, 0.5, 0.0], dtype=torch.float32))
    out = sigmas_from_scheduler(with_zero)
    assert out.dtype == torch.float64 and out.device.type == "cpu" and out.tolist() == [1.0, 0.5, 0.0]
    assert sigmas_from_scheduler(SimpleNamespace(sigmas=[0.8, 0.3])).tolist() == [0.8, 0.3, 0.0]
    np = pytest.importorskip("numpy")
    assert sigmas_from_scheduler(SimpleNamespace(sigmas=np.array([1.0, 0.25]))).tolist() == [1.0, 0.25, 0.0]
    # A scheduler-like object (has set_timesteps) that was set up is accepted.
    ready = SimpleNamespace(sigmas=[1.0, 0.5, 0.0], num_inference_steps=2, set_timesteps=lambda n: None)
    assert sigmas_from_scheduler(ready).tolist() == [1.0, 0.5, 0.0]
    # The input tensor is not modified or aliased.
    src = torch.tensor([1.0, 0.5], dtype=torch.float64)
    out = sigmas_from_scheduler(SimpleNamespace(sigmas=src))
    out[0] = 7.0
    assert src.tolist() == [1.0, 0.5]


@given(n=st.integers(1, 60), shift=st.floats(0.1, 20.0), terminal=st.booleans())
def test_sigmas_from_scheduler_round_trips_valid_schedules(n: int, shift: float, terminal: bool) -> None:
    sigmas = sd3_sigmas(n, shift=shift)
    passed = sigmas if terminal else sigmas[:-1]
    assert torch.equal(sigmas_from_scheduler(SimpleNamespace(sigmas=passed)), sigmas)


@pytest.mark.parametrize(
    ("scheduler", "error", "match"),
    [
        (SimpleNamespace(), ValueError, r"scheduler.sigmas is missing.*set_timesteps\(N\) first"),
        (SimpleNamespace(sigmas=None), ValueError, "scheduler.sigmas is missing"),
        (SimpleNamespace(sigmas=torch.empty(0)), ValueError, r"scheduler.sigmas is empty.*set_timesteps"),
        (SimpleNamespace(sigmas=[]), ValueError, "scheduler.sigmas is empty"),
        (
            SimpleNamespace(sigmas=[1.0, 0.0], num_inference_steps=None, set_timesteps=lambda n: None),
            ValueError,
            r"num_inference_steps is None.*set_timesteps\(N\) first",
        ),
        (SimpleNamespace(sigmas=torch.ones(2, 3)), ValueError, r"scheduler.sigmas must be 1-D.*\(2, 3\)"),
        (SimpleNamespace(sigmas=torch.tensor(0.5)), ValueError, "scheduler.sigmas must be 1-D"),
        (SimpleNamespace(sigmas=[1.0, math.nan, 0.0]), ValueError, "scheduler.sigmas must be finite"),
        (SimpleNamespace(sigmas=[1000.0, 500.0, 0.0]), ValueError, r"scheduler.sigmas must lie in \[0, 1\]"),
        (SimpleNamespace(sigmas=[1.0, -0.1]), ValueError, r"must lie in \[0, 1\]"),
        (SimpleNamespace(sigmas=[0.0, 0.5, 1.0]), ValueError, "scheduler.sigmas must be strictly decreasing"),
        (SimpleNamespace(sigmas=[1.0, 0.5, 0.5, 0.0]), ValueError, r"sigmas\[2\] = 0.5 >= sigmas\[1\]"),
        (SimpleNamespace(sigmas=[0.0]), ValueError, "at least one step"),
        (SimpleNamespace(sigmas="abc"), TypeError, "scheduler.sigmas must be a tensor, array or sequence"),
        (SimpleNamespace(sigmas=[[1.0], [0.5, 0.0]]), TypeError, "scheduler.sigmas must be a tensor"),
    ],
)
def test_sigmas_from_scheduler_bad_input(scheduler, error, match) -> None:
    with pytest.raises(error, match=match):
        sigmas_from_scheduler(scheduler)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: sd3_sigmas(0), ValueError, "num_steps must be >= 1"),
        (lambda: sd3_sigmas(10.0), TypeError, "num_steps must be an int"),
        (lambda: sd3_sigmas(True), TypeError, "num_steps must be an int"),
        (lambda: sd3_sigmas(10, shift=0.0), ValueError, "shift must be > 0"),
        (lambda: sd3_sigmas(10, shift=-3.0), ValueError, "shift must be > 0"),
        (lambda: sd3_sigmas(10, shift=math.nan), ValueError, "shift must be finite"),
        (lambda: sd3_sigmas(10, shift="3"), TypeError, "shift must be a number"),
        (lambda: sd3_sigmas(10, dtype=torch.int64), TypeError, "floating-point dtype"),
    ],
)
def test_sd3_bad_input(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
