"""SDE steps and the log-prob: spec numbers, the four dynamics, backends, exact ratios, errors."""

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

import rewardkit
from rewardkit.core.sde import KINDS, sde_coefficients

# These tests pin the formulas at the legacy default noise level (1.0, DyRef); the
# FutureWarning that default now raises is tested in test_sde_config.py.
pytestmark = pytest.mark.filterwarnings("ignore:.*noise_level not given:FutureWarning")

QWEN = rewardkit.qwen_image_sigmas(10, 1024)
FLUX2 = rewardkit.flux2_sigmas(10, 1024)

# Sanity table of the reference formulas (Flow-SDE, a = 1, 512², N = 10): i, σ_t, s, c_x, c_v.
SANITY = [
    (QWEN, 1, 3.616, 1.007, 0.4546, -0.1162),
    (QWEN, 2, 2.394, 0.698, 0.7143, -0.1273),
    (QWEN, 3, 1.812, 0.554, 0.8000, -0.1400),
    (FLUX2, 1, 8.105, 1.091, 0.3957, -0.0272),
    (FLUX2, 2, 5.404, 0.808, 0.6627, -0.0335),
    (FLUX2, 3, 4.127, 0.693, 0.7455, -0.0423),
]


def latents(shape, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype),
        torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype),
    )


@pytest.mark.parametrize(("sigmas", "i", "sigma_t", "std", "c_x", "c_v"), SANITY)
def test_flow_sde_coefficients_match_the_sanity_table(sigmas, i, sigma_t, std, c_x, c_v) -> None:
    s, s_next = float(sigmas[i]), float(sigmas[i + 1])
    c = sde_coefficients(s, s_next)
    assert c.std / math.sqrt(s - s_next) == pytest.approx(sigma_t, abs=5e-4)  # σ_t = s / sqrt(−dt)
    assert c.std == pytest.approx(std, abs=5e-4)
    assert c.c_x == pytest.approx(c_x, abs=5e-5)
    assert c.c_v == pytest.approx(c_v, abs=5e-5)
    assert c.alpha == pytest.approx(-1 / (2 * std**2), rel=2e-3)
    assert c.beta == pytest.approx(-math.log(c.std) - 0.5 * math.log(2 * math.pi), rel=1e-12)


def test_means_follow_each_papers_formula() -> None:
    x, v = latents((3, 5, 4), torch.float64)
    s, sn, a = 0.8, 0.65, 0.7
    dt = sn - s
    x0, x1 = x - s * v, x + (1 - s) * v  # predicted data / noise
    sigma_t = a * math.sqrt(s / (1 - s))
    flow = x * (1 + sigma_t**2 / (2 * s) * dt) + v * (1 + sigma_t**2 * (1 - s) / (2 * s)) * dt
    dance = x + (v + 0.5 * a**2 * (x - x0 * (1 - s)) / s**2) * dt  # DanceGRPO's x̂0 form
    std_cps = sn * math.sin(a * math.pi / 2)
    cps = (1 - sn) * x0 + math.sqrt(sn**2 - std_cps**2) * x1
    want = {"flow_sde": flow, "dance_sde": dance, "cps": cps, "ode": x + v * dt}
    stds = {"flow_sde": sigma_t * math.sqrt(-dt), "dance_sde": a * math.sqrt(-dt), "cps": std_cps, "ode": 0.0}
    gen = torch.Generator().manual_seed(1)
    for kind in KINDS:
        step = rewardkit.sde_step(x, v, s, sn, kind=kind, noise_level=a, generator=gen)
        torch.testing.assert_close(step.mean, want[kind], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(step.noise_std, torch.full((3,), stds[kind], dtype=torch.float64))


def test_next_is_mean_plus_std_times_the_given_noise() -> None:
    x, v = latents((2, 6, 3))
    noise = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(5))
    step = rewardkit.sde_step(x, v, 0.9, 0.8, noise=noise)
    torch.testing.assert_close(step.next, step.mean + step.noise_std.view(-1, 1, 1) * noise)
    # A generator draws the same ε as torch.randn with that generator.
    drawn = rewardkit.sde_step(x, v, 0.9, 0.8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(drawn.next, step.next)


@pytest.mark.parametrize("kind", ["flow_sde", "dance_sde"])
def test_gaussian_log_prob_is_the_mean_normal_log_density(kind) -> None:
    x, v = latents((3, 7, 5), torch.float64)
    step = rewardkit.sde_step(
        x, v, 0.7, 0.5, kind=kind, noise_level=0.8, generator=torch.Generator().manual_seed(2)
    )
    density = torch.distributions.Normal(step.mean, step.noise_std.view(-1, 1, 1)).log_prob(step.next)
    torch.testing.assert_close(step.log_prob, density.mean(dim=(1, 2)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["cps", "ode"])
def test_cps_and_ode_log_prob_is_the_negative_mean_square(kind) -> None:
    x, v = latents((3, 4, 6), torch.float64)
    x_next = torch.randn(3, 4, 6, dtype=torch.float64)
    got = rewardkit.sde_log_prob(x_next, x, v, 0.6, 0.4, kind=kind, noise_level=0.5)
    mean = rewardkit.sde_step(x, v, 0.6, 0.4, kind=kind, noise_level=0.5, noise=torch.zeros_like(x)).mean
    torch.testing.assert_close(got, -(x_next - mean).square().mean(dim=(1, 2)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_ode_kind_is_exactly_the_euler_step(dtype) -> None:
    x, v = latents((2, 9, 3), dtype)
    for i in range(10):
        s, sn = float(QWEN[i]), float(QWEN[i + 1])
        step = rewardkit.sde_step(x, v, s, sn, kind="ode")
        cd = torch.float64 if dtype == torch.float64 else torch.float32
        assert torch.equal(step.next, (x.to(cd) + v.to(cd) * (sn - s)).to(dtype))
        assert step.next.dtype == dtype and step.log_prob.dtype == cd
        assert bool((step.noise_std == 0).all())


@pytest.mark.parametrize("kind", ["flow_sde", "dance_sde"])
def test_noise_level_zero_is_exactly_the_euler_step(kind) -> None:
    x, v = latents((2, 9, 3))
    for i in range(10):  # includes σ = 1 (no sigma_max needed at a = 0) and σ' = 0
        s, sn = float(QWEN[i]), float(QWEN[i + 1])
        step = rewardkit.sde_step(x, v, s, sn, kind=kind, noise_level=0.0)
        euler = rewardkit.sde_step(x, v, s, sn, kind="ode")
        assert torch.equal(step.next, euler.next)
        # s = 0: the degenerate density falls back to the ODE surrogate −mean(r²), which is ~0
        # for the step's own output (finite, not ±inf or NaN).
        c = sde_coefficients(s, sn, kind=kind, noise_level=0.0)
        assert (c.std, c.alpha, c.beta) == (0.0, -1.0, 0.0)
        assert bool(torch.isfinite(step.log_prob).all()) and float(step.log_prob.abs().max()) < 1e-10


def test_cps_with_noise_level_zero_is_the_euler_step_up_to_rounding() -> None:
    x, v = latents((2, 9, 3), torch.float64)
    step = rewardkit.sde_step(x, v, 0.7, 0.4, kind="cps", noise_level=0.0)
    torch.testing.assert_close(step.next, x + v * (0.4 - 0.7), rtol=1e-14, atol=1e-14)


def test_flow_sde_at_sigma_one_uses_sigma_max() -> None:
    x, v = latents((2, 4, 3), torch.float64)
    s1, s2 = float(QWEN[1]), float(QWEN[2])
    c = sde_coefficients(1.0, s1, sigma_max=s1)
    sigma_t = math.sqrt(1.0 / (1.0 - s1))  # σ̃ = σ_max replaces σ = 1 in the denominator
    assert c.std == pytest.approx(sigma_t * math.sqrt(1.0 - s1), rel=1e-12)
    assert c.c_x == pytest.approx(1 + sigma_t**2 * (s1 - 1.0) / 2.0, rel=1e-12)
    # sigma_max is ignored below σ = 1.
    assert sde_coefficients(s1, s2, sigma_max=0.5) == sde_coefficients(s1, s2)
    with pytest.raises(ValueError, match="pass sigma_max"):
        rewardkit.sde_step(x, v, 1.0, s1, generator=torch.Generator())
    with pytest.raises(ValueError, match="pass sigma_max"):
        rewardkit.sde_log_prob(x, x, v, torch.tensor([0.9, 1.0]), 0.8)


def test_per_sample_sigmas_equal_one_call_per_sample() -> None:
    x, v = latents((3, 5, 2), torch.float64)
    x_next = torch.randn(3, 5, 2, dtype=torch.float64)
    s = torch.tensor([float(QWEN[1]), float(QWEN[4]), float(QWEN[8])], dtype=torch.float64)
    sn = torch.tensor([float(QWEN[2]), float(QWEN[5]), float(QWEN[9])], dtype=torch.float64)
    noise = torch.randn(3, 5, 2, dtype=torch.float64)
    for kind in KINDS:
        batched = rewardkit.sde_step(x, v, s, sn, kind=kind, noise_level=0.6, noise=noise)
        lp = rewardkit.sde_log_prob(x_next, x, v, s, sn, kind=kind, noise_level=0.6)
        for b in range(3):
            one = rewardkit.sde_step(
                x[b : b + 1],
                v[b : b + 1],
                float(s[b]),
                float(sn[b]),
                kind=kind,
                noise_level=0.6,
                noise=noise[b : b + 1],
            )
            torch.testing.assert_close(batched.next[b], one.next[0], rtol=1e-13, atol=1e-13)
            torch.testing.assert_close(batched.log_prob[b], one.log_prob[0], rtol=1e-13, atol=1e-13)
            single = rewardkit.sde_log_prob(
                x_next[b : b + 1],
                x[b : b + 1],
                v[b : b + 1],
                float(s[b]),
                float(sn[b]),
                kind=kind,
                noise_level=0.6,
            )
            torch.testing.assert_close(lp[b], single[0], rtol=1e-13, atol=1e-13)
    # A 0-d float64 tensor sigma is the same as the float (torch vs math libm: ≤ 1 ulp).
    torch.testing.assert_close(
        rewardkit.sde_log_prob(
            x_next, x, v, torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)
        ),
        rewardkit.sde_log_prob(x_next, x, v, 0.7, 0.5),
        rtol=1e-14,
        atol=1e-14,
    )


@pytest.mark.parametrize("backend", ["auto", "cpu_fused", "eager"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ratio_is_exactly_one_when_recomputed_from_the_stored_rollout(backend, dtype) -> None:
    """Rollout under no_grad, store (x, next) in the latents' dtype, recompute with grad in training."""
    x, v = latents((4, 33, 7), dtype)
    sigmas = rewardkit.flux2_sigmas(10, 1024)
    gen = torch.Generator().manual_seed(3)
    for i in rewardkit.sde_window(10, epoch=0, num_train_steps=4).tolist():
        s, sn = float(sigmas[i]), float(sigmas[i + 1])
        with torch.no_grad():
            rollout = rewardkit.sde_step(
                x, v, s, sn, generator=gen, sigma_max=float(sigmas[1]), backend=backend
            )
        stored_x, stored_next, old = x.clone(), rollout.next.clone(), rollout.log_prob
        velocity = v.clone().requires_grad_()  # the "current policy" recomputes the same v
        new = rewardkit.sde_log_prob(
            stored_next, stored_x, velocity, s, sn, sigma_max=float(sigmas[1]), backend=backend
        )
        assert torch.equal(new, old)
        assert bool((torch.exp(new - old) == 1).all())
        new.sum().backward()
        assert velocity.grad is not None and bool(torch.isfinite(velocity.grad).all())
        x = rollout.next


def test_backends_agree_and_the_fused_gradient_is_the_closed_form() -> None:
    x, v = latents((3, 11, 5), torch.float64)
    x_next = torch.randn(3, 11, 5, dtype=torch.float64)
    dy = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    out = {}
    for backend in ("eager", "cpu_fused", "auto"):
        xx, vv = x.clone().requires_grad_(), v.clone().requires_grad_()
        lp = rewardkit.sde_log_prob(
            x_next, xx, vv, 0.75, 0.6, kind="dance_sde", noise_level=0.9, backend=backend
        )
        (lp * dy).sum().backward()
        out[backend] = (lp, xx.grad, vv.grad)
    for backend in ("cpu_fused", "auto"):
        for got, want in zip(out[backend], out["eager"], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    c = sde_coefficients(0.75, 0.6, kind="dance_sde", noise_level=0.9)
    r = x_next - c.c_x * x - c.c_v * v
    want_v = (dy * (-2 * c.alpha * c.c_v / 55)).view(-1, 1, 1) * r
    torch.testing.assert_close(out["cpu_fused"][2], want_v, rtol=1e-12, atol=1e-14)


def test_x_next_gets_no_gradient_and_x_only_when_asked() -> None:
    x, v = latents((2, 3, 4))
    x_next = torch.randn(2, 3, 4, requires_grad=True)
    vv = v.clone().requires_grad_()
    rewardkit.sde_log_prob(x_next, x, vv, 0.5, 0.4).sum().backward()
    assert x_next.grad is None and x.grad is None and vv.grad is not None


DTYPES = [torch.float32, torch.bfloat16, torch.float64]
# Relative tolerances against the float64 eager reference on the same (rounded) input values.
# bf16 inputs are computed in fp32 like fp32 ones; bf16 gradients are returned in bf16, hence one
# bf16 rounding (2^-8 ≈ 4e-3) of slack on the gradient.
FWD_TOL = {torch.float32: 1e-6, torch.bfloat16: 1e-6, torch.float64: 1e-14}
GRAD_TOL = {torch.float32: 1e-6, torch.bfloat16: 8e-3, torch.float64: 1e-14}


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 4),
    tokens=st.integers(1, 9),
    channels=st.integers(1, 7),
    dtype=st.sampled_from(DTYPES),
    kind=st.sampled_from(KINDS),
    schedule=st.sampled_from(["qwen", "flux2"]),
    step=st.integers(0, 9),
    # 0 (deterministic) or a usable level; a ≈ 1e-100 would overflow α = −1/(2s²) in fp32.
    noise_level=st.one_of(st.just(0.0), st.floats(0.05, 1.0)),
    per_sample=st.booleans(),
    need_x=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fused_matches_float64_eager_reference(
    batch, tokens, channels, dtype, kind, schedule, step, noise_level, per_sample, need_x, seed
) -> None:
    sigmas = QWEN if schedule == "qwen" else FLUX2
    s, sn = float(sigmas[step]), float(sigmas[step + 1])
    sig: float | torch.Tensor = s
    sig_next: float | torch.Tensor = sn
    if per_sample:  # different steps per sample, drawn across the schedule
        idx = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(seed))
        sig, sig_next = sigmas[idx], sigmas[idx + 1]
    kw = {"kind": kind, "noise_level": noise_level, "sigma_max": float(sigmas[1])}
    x, v = latents((batch, tokens, channels), dtype, seed)
    x_next = rewardkit.sde_step(x, v, sig, sig_next, generator=torch.Generator().manual_seed(seed), **kw).next
    x_next = x_next + 0.1 * torch.randn(x_next.shape, generator=torch.Generator().manual_seed(seed + 1)).to(
        dtype
    )

    ref_x, ref_v = x.double().clone().requires_grad_(need_x), v.double().clone().requires_grad_()
    ref = rewardkit.sde_log_prob(x_next.double(), ref_x, ref_v, sig, sig_next, backend="eager", **kw)
    dy = torch.randn(batch, generator=torch.Generator().manual_seed(seed + 2), dtype=torch.float64)
    (ref * dy).sum().backward()

    got_x, got_v = x.clone().requires_grad_(need_x), v.clone().requires_grad_()
    got = rewardkit.sde_log_prob(x_next, got_x, got_v, sig, sig_next, backend="cpu_fused", **kw)
    assert got.shape == (batch,) and got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    (got * dy.to(got.dtype)).sum().backward()

    # Error model: r = x' − c_x x − c_v v is computed in the compute dtype, so its error is
    # ~eps·T with T = |x'| + |c_x x| + |c_v v|; the bounds below scale with T accordingly.
    c = sde_coefficients(sig, sig_next, **kw)
    col = lambda a: torch.as_tensor(a, dtype=torch.float64).reshape(-1, 1, 1)  # noqa: E731
    terms = x_next.double().abs() + (col(c.c_x) * x.double()).abs() + (col(c.c_v) * v.double()).abs()
    scale = col(c.alpha).abs().flatten() * terms.square().mean(dim=(1, 2)) + col(c.beta).abs().flatten() + 1
    assert bool(((got.double() - ref).abs() <= FWD_TOL[dtype] * scale).all())
    d = x.shape[1] * x.shape[2]
    k = (2 * col(c.alpha).abs() / d) * dy.abs().view(-1, 1, 1) * terms
    pairs = [(got_v.grad, ref_v.grad, col(c.c_v).abs())]
    if need_x:
        pairs.append((got_x.grad, ref_x.grad, col(c.c_x).abs()))
    for g, want, coef in pairs:
        assert g is not None and want is not None and g.dtype == dtype
        bound = GRAD_TOL[dtype] * (coef * k + want.abs()) + 1e-300
        assert bool(((g.double() - want).abs() <= bound).all())
    if not need_x:
        assert got_x.grad is None


def test_generator_on_its_own_device_and_global_rng_untouched() -> None:
    x, v = latents((2, 3, 2))
    state = torch.get_rng_state()
    a = rewardkit.sde_step(x, v, 0.5, 0.3, generator=torch.Generator().manual_seed(9))
    b = rewardkit.sde_step(x, v, 0.5, 0.3, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a.next, b.next) and torch.equal(torch.get_rng_state(), state)


def _bad(**overrides):
    x, v = latents((2, 3, 4))
    kw = {"x": x, "velocity": v, "sigma": 0.5, "sigma_next": 0.4, "generator": torch.Generator()}
    kw.update(overrides)
    return lambda: rewardkit.sde_step(**kw)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (_bad(kind="sde"), ValueError, r"kind must be one of \('flow_sde', 'dance_sde', 'cps', 'ode'\)"),
        (_bad(backend="cuda"), ValueError, r"backend must be one of \('auto', 'triton', 'cpu_fused'"),
        (_bad(velocity=torch.zeros(2, 3, 5)), ValueError, r"velocity must have the shape of x \(2, 3, 4\)"),
        (
            _bad(velocity=torch.zeros(2, 3, 4, dtype=torch.int64)),
            TypeError,
            "velocity must be a floating-point",
        ),
        (_bad(x=torch.zeros(4), velocity=torch.zeros(4)), ValueError, r"batch dim and at least one more"),
        (_bad(x=[1.0]), TypeError, "x must be a torch.Tensor"),
        (_bad(sigma=0.0), ValueError, r"sigma must lie in \(0, 1\]"),
        (_bad(sigma=1.5), ValueError, r"sigma must lie in \(0, 1\]"),
        (_bad(sigma_next=0.5), ValueError, "sigma_next must be < sigma"),
        (_bad(sigma_next=-0.1), ValueError, "sigma_next must be >= 0"),
        (_bad(sigma=math.nan), ValueError, "sigma must be finite"),
        (_bad(sigma="0.5"), TypeError, "sigma must be a float or a tensor"),
        (_bad(sigma=torch.tensor([0.5, 0.6, 0.7])), ValueError, "one value per sample"),
        (_bad(sigma=torch.ones(2, 1) * 0.5), ValueError, r"\(B,\) tensor"),
        (_bad(sigma_next=torch.tensor([0.4, 0.6])), ValueError, "sigma_next must be < sigma"),
        (_bad(sigma=1.0, sigma_next=0.9, sigma_max=1.0), ValueError, r"sigma_max must lie in \(0, 1\)"),
        (_bad(noise_level=-0.5), ValueError, "noise_level must be a finite number >= 0"),
        (_bad(kind="cps", noise_level=1.5), ValueError, r"a ∈ \[0, 1\]"),
        (_bad(generator=None), ValueError, "needs noise= or generator="),
        (_bad(noise=torch.zeros(2, 3, 4)), ValueError, "either noise= or generator="),
        (_bad(generator=None, noise=torch.zeros(2, 3)), ValueError, "noise must have the shape of x"),
    ],
)
def test_bad_input_raises_with_a_useful_message(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()


def test_log_prob_bad_input() -> None:
    x, v = latents((2, 3, 4))
    with pytest.raises(ValueError, match="x_next must have the shape of x"):
        rewardkit.sde_log_prob(x[:1], x, v, 0.5, 0.4)
    with pytest.raises(ValueError, match="backend must be one of"):
        rewardkit.sde_log_prob(x, x, v, 0.5, 0.4, backend="fast")
    with pytest.raises(ValueError, match="must not be empty"):
        rewardkit.sde_log_prob(x[:, :0], x[:, :0], v[:, :0], 0.5, 0.4)


def test_triton_backend_explains_what_it_needs() -> None:
    from rewardkit.kernels.sde_logprob import HAS_TRITON, TRITON_INTERPRETED

    x, v = latents((2, 3, 4))
    if not HAS_TRITON:
        with pytest.raises(RuntimeError, match="needs the triton package"):
            rewardkit.sde_log_prob(x, x, v, 0.5, 0.4, backend="triton")
    elif not TRITON_INTERPRETED:
        with pytest.raises(ValueError, match="runs on CUDA tensors"):
            rewardkit.sde_log_prob(x, x, v, 0.5, 0.4, backend="triton")
    else:  # Triton's CPU interpreter is active: the kernel runs on CPU tensors
        want = rewardkit.sde_log_prob(x, x, v, 0.5, 0.4, backend="eager")
        torch.testing.assert_close(rewardkit.sde_log_prob(x, x, v, 0.5, 0.4, backend="triton"), want)


def test_usable_inside_the_clipped_policy_loss() -> None:
    x, v = latents((4, 16, 8))
    with torch.no_grad():
        old = rewardkit.sde_step(x, v, 0.9, 0.8, generator=torch.Generator().manual_seed(0))
    adv = torch.tensor([1.0, -0.5, 0.25, 2.0])
    grads = []
    for backend in ("eager", "cpu_fused"):
        vv = (v + 1e-3).requires_grad_()  # a slightly different policy
        new = rewardkit.sde_log_prob(old.next, x, vv, 0.9, 0.8, backend=backend)
        loss, _ = rewardkit.clipped_policy_loss(new, old.log_prob, adv, clip_range=0.5)
        loss.backward()
        grads.append(vv.grad)
    assert grads[0] is not None and float(grads[0].abs().max()) > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cpu_fused", "compiled"])
def test_torch_compile_traces_the_fused_path_without_graph_breaks(backend) -> None:
    x, v = latents((3, 40, 8))
    x_next = torch.randn(3, 40, 8)
    adv = torch.tensor([0.5, -1.0, 2.0])

    def loss_fn(x_next, x, v):
        new = rewardkit.sde_log_prob(x_next, x, v, 0.8, 0.7, backend=backend)
        ratio = torch.exp(new - new.detach())
        return torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - 1e-4, 1 + 1e-4)).mean()

    compiled = torch.compile(loss_fn, fullgraph=True)  # fullgraph: a graph break is an error
    v1, v2 = v.clone().requires_grad_(), v.clone().requires_grad_()
    compiled(x_next, x, v1).backward()
    loss_fn(x_next, x, v2).backward()
    assert v1.grad is not None and float(v1.grad.abs().max()) > 0
    torch.testing.assert_close(v1.grad, v2.grad, rtol=1e-5, atol=1e-9)
