"""Fused SDE log-prob kernels: parity with the eager spec, gradients, memory, Triton, CUDA."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import rewardkit
from rewardkit.core.sde import _coefficient_tensor, _eager_log_prob, sde_coefficients
from rewardkit.kernels import sde_logprob as K

# These tests pin the formulas at the legacy default noise level (1.0, DyRef); the
# FutureWarning that default now raises is tested in test_sde_config.py.
pytestmark = pytest.mark.filterwarnings("ignore:.*noise_level not given:FutureWarning")

INTERPRETER = K.HAS_TRITON and K.TRITON_INTERPRETED
needs_interpreter = pytest.mark.skipif(
    not INTERPRETER,
    reason="Triton interpreter tests need triton importable and TRITON_INTERPRET=1 "
    "(e.g. PYTHONPATH=/tmp/tritonlib TRITON_INTERPRET=1 pytest tests/kernels)",
)
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def inputs(shape, dtype=torch.float32, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    make = lambda: torch.randn(shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)  # noqa: E731
    return make(), make(), make()


def coef_for(x, sigma=0.8, sigma_next=0.7, *, kind="flow_sde", noise_level=1.0, dtype=None):
    coeffs = sde_coefficients(sigma, sigma_next, kind=kind, noise_level=noise_level)
    return _coefficient_tensor(
        coeffs, x, dtype or (torch.float64 if x.dtype == torch.float64 else torch.float32)
    )


def run(impl, x_next, x, v, coef, dy, *, need_x=True):
    xx, vv = x.clone().requires_grad_(need_x), v.clone().requires_grad_()
    out = (
        K.fused_sde_log_prob(x_next, xx, vv, coef, impl=impl)
        if impl != "eager"
        else _eager_log_prob(x_next, xx, vv, coef)
    )
    (out * dy.to(out.dtype)).sum().backward()
    return out.detach(), xx.grad, vv.grad


# ---------------------------------------------------------------------------------------------
# chunked (torch) path: gradcheck, chunk boundaries, residual reuse, no full-size temporaries
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("per_sample", [False, True])
def test_gradcheck_float64(per_sample) -> None:
    x_next, x, v = inputs((3, 5, 4), torch.float64)
    sig = torch.tensor([0.9, 0.6, 0.3], dtype=torch.float64) if per_sample else 0.6
    for kind in ("flow_sde", "dance_sde", "cps", "ode"):

        def fn(x, v, kind=kind):
            return rewardkit.sde_log_prob(
                x_next, x, v, sig, 0.2, kind=kind, noise_level=0.7, backend="cpu_fused"
            )

        assert torch.autograd.gradcheck(fn, (x.clone().requires_grad_(), v.clone().requires_grad_()))


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_chunk_boundaries_do_not_change_the_result(monkeypatch, chunk, dtype) -> None:
    monkeypatch.setattr(K, "CHUNK_ELEMENTS", chunk)  # 1: one column per chunk; 7: ragged tail
    x_next, x, v = inputs((3, 13, 5), dtype)
    coef = coef_for(x)
    dy = torch.tensor([0.5, -2.0, 1.5])
    ref = run("eager", x_next.double(), x.double(), v.double(), coef.double(), dy.double())
    got = run("chunked", x_next, x, v, coef, dy)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(got[0].double(), ref[0], rtol=tol, atol=tol)
    for g, r in zip(got[1:], ref[1:], strict=True):
        assert g.dtype == dtype
        torch.testing.assert_close(g.double(), r, rtol=8e-3 if dtype == torch.bfloat16 else tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_forward_is_bit_identical_with_and_without_grad(dtype) -> None:
    """The rollout (no grad) and training (grad, residual kept) forwards must agree exactly."""
    for shape in [(1, 1, 1), (3, 1000, 3), (8, 128, 64), (2, 4099, 7)]:
        x_next, x, v = inputs(shape, dtype, seed=shape[1])
        coef = coef_for(x)
        with torch.no_grad():
            plain = K.fused_sde_log_prob(x_next, x, v, coef, impl="chunked")
        kept = K.fused_sde_log_prob(
            x_next, x.clone().requires_grad_(), v.clone().requires_grad_(), coef, impl="chunked"
        )
        assert torch.equal(plain, kept.detach())


def test_second_backward_recomputes_after_the_residual_was_consumed() -> None:
    x_next, x, v = inputs((2, 50, 3))
    vv = v.clone().requires_grad_()
    out = K.fused_sde_log_prob(x_next, x, vv, coef_for(x), impl="chunked")
    (first,) = torch.autograd.grad(out.sum(), vv, retain_graph=True)  # consumes the residual in place
    (second,) = torch.autograd.grad(out.sum(), vv)  # must recompute, not reuse the mutated buffer
    torch.testing.assert_close(second, first, rtol=1e-6, atol=1e-9)
    ref = run("eager", x_next, x, v, coef_for(x), torch.ones(2), need_x=False)[2]
    torch.testing.assert_close(first, ref, rtol=1e-5, atol=1e-9)


def test_non_contiguous_inputs() -> None:
    x_next, x, v = (t.transpose(1, 2) for t in inputs((2, 6, 9)))
    assert not x.is_contiguous()
    coef = coef_for(x)
    dy = torch.tensor([1.0, -0.5])
    got, ref = run("chunked", x_next, x, v, coef, dy), run("eager", x_next, x, v, coef, dy)
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-7)


class _Allocations(TorchDispatchMode):
    """Records the bytes of every tensor an aten op allocates (outputs not aliasing an input)."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        seen = {
            a.untyped_storage().data_ptr()
            for a in torch.utils._pytree.tree_leaves((args, kwargs))
            if isinstance(a, torch.Tensor)
        }
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in seen:
                self.sizes.append(t.untyped_storage().nbytes())
        return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_no_full_size_temporaries(dtype) -> None:
    """Forward: no full-size allocation (one, the kept residual, when it is reused as grad_v)."""
    x_next, x, v = inputs((8, 1024, 64), dtype)  # Qwen 512²: 2 MiB per fp32 tensor
    full = x.numel() * 4  # one fp32 tensor of the input's size
    coef = coef_for(x)
    with torch.no_grad(), _Allocations() as rec:
        K.fused_sde_log_prob(x_next, x, v, coef, impl="chunked")
    assert max(rec.sizes) <= K.CHUNK_ELEMENTS * 4  # only the cache-sized chunk buffer

    vv = v.clone().requires_grad_()
    with _Allocations() as fwd:
        out = K.fused_sde_log_prob(x_next, x, vv, coef, impl="chunked")
    with _Allocations() as bwd:
        out.sum().backward()
    big_fwd = [s for s in fwd.sizes if s > K.CHUNK_ELEMENTS * 4]
    big_bwd = [s for s in bwd.sizes if s > K.CHUNK_ELEMENTS * 4]
    if dtype == torch.float32:  # residual kept in forward, scaled in place into grad_v
        assert big_fwd == [full] and big_bwd == []
    else:  # bf16: forward keeps nothing; backward allocates only grad_v (bf16)
        assert big_fwd == [] and big_bwd == [x.numel() * 2]
    # The eager reference, for contrast, allocates several full-size tensors.
    with _Allocations() as eager:
        _eager_log_prob(x_next, x, v.clone().requires_grad_(), coef).sum().backward()
    assert len([s for s in eager.sizes if s >= full]) >= 4


def test_custom_ops_pass_opcheck() -> None:
    x_next, x, v = inputs((2, 5, 3))
    coef = coef_for(x)
    torch.library.opcheck(
        torch.ops.rewardkit.sde_log_prob_fwd.default,
        (x_next, x.requires_grad_(), v.requires_grad_(), coef, "chunked"),
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )
    torch.library.opcheck(
        torch.ops.rewardkit.sde_log_prob_bwd.default,
        (torch.ones(2), x_next, x.detach(), v.detach(), coef, "chunked", True, False),
        test_utils=("test_schema", "test_faketensor"),
    )


def test_unknown_impl_is_rejected() -> None:
    x_next, x, v = inputs((1, 2, 2))
    with pytest.raises(ValueError, match=r"impl must be one of \('chunked', 'compiled', 'triton'\)"):
        K.fused_sde_log_prob(x_next, x, v, coef_for(x), impl="cuda")


@pytest.mark.slow
def test_compiled_impl_matches_eager() -> None:
    x_next, x, v = inputs((3, 40, 7))
    coef, dy = coef_for(x), torch.tensor([1.0, -1.0, 0.5])
    got, ref = run("compiled", x_next, x, v, coef, dy), run("eager", x_next, x, v, coef, dy)
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# Triton kernels on CPU tensors through Triton's interpreter
# ---------------------------------------------------------------------------------------------


@needs_interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 37, 5), (2, 4099)])
def test_triton_interpreter_matches_eager(dtype, shape) -> None:
    x_next, x, v = inputs(shape, dtype)
    dy = torch.linspace(-1.0, 2.0, shape[0])
    for per_sample in (False, True):
        sig = torch.linspace(0.9, 0.5, shape[0], dtype=torch.float64) if per_sample else 0.8
        coef = _coefficient_tensor(
            sde_coefficients(sig, 0.4), x, torch.float64 if dtype == torch.float64 else torch.float32
        )
        ref = run("eager", x_next.double(), x.double(), v.double(), coef.double(), dy.double())
        got = run("triton", x_next, x, v, coef, dy)
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(got[0].double(), ref[0], rtol=tol, atol=tol)
        gtol = {torch.bfloat16: 8e-3, torch.float16: 1e-3}.get(dtype, tol)
        for g, r in zip(got[1:], ref[1:], strict=True):
            assert g.dtype == dtype
            torch.testing.assert_close(g.double(), r, rtol=gtol, atol=tol)
        again = K.fused_sde_log_prob(x_next, x, v, coef, impl="triton")
        assert torch.equal(again, got[0].detach())  # fixed-order reduction: deterministic


@needs_interpreter
def test_triton_interpreter_gradcheck_and_exact_ratio() -> None:
    x_next, x, v = inputs((2, 3, 5), torch.float64)

    def fn(x, v):
        return rewardkit.sde_log_prob(x_next, x, v, 0.7, 0.5, kind="dance_sde", backend="triton")

    assert torch.autograd.gradcheck(fn, (x.clone().requires_grad_(), v.clone().requires_grad_()))
    xs, vs, _ = inputs((2, 9, 4), torch.bfloat16, seed=1)
    with torch.no_grad():
        step = rewardkit.sde_step(
            xs, vs, 0.7, 0.5, generator=torch.Generator().manual_seed(0), backend="triton"
        )
    new = rewardkit.sde_log_prob(step.next, xs, vs.clone().requires_grad_(), 0.7, 0.5, backend="triton")
    assert torch.equal(new.detach(), step.log_prob)


@needs_interpreter
def test_triton_reduction_fallback_for_very_long_rows(monkeypatch) -> None:
    monkeypatch.setattr(K, "TRITON_MAX_PARTIALS", 1)  # force the torch reduction of partials
    x_next, x, v = inputs((2, 5000))
    coef = coef_for(x)
    torch.testing.assert_close(
        K.fused_sde_log_prob(x_next, x, v, coef, impl="triton"),
        _eager_log_prob(x_next, x, v, coef),
        rtol=1e-5,
        atol=1e-6,
    )


# ---------------------------------------------------------------------------------------------
# CUDA
# ---------------------------------------------------------------------------------------------

CUDA_SHAPES = [(8, 1024, 64), (4, 4096, 64), (8, 1024, 128), (3, 1001, 67), (1, 1, 1)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", CUDA_SHAPES)
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.gpu
@requires_cuda
def test_cuda_triton_three_way_parity(dtype, shape, per_sample) -> None:
    """Kernel error vs the fp64 eager reference ≤ 2 × eager-in-low-precision error + atol."""
    x_next, x, v = inputs(shape, dtype, "cuda")
    dy = torch.randn(shape[0], generator=torch.Generator().manual_seed(1)).cuda()
    sig = torch.linspace(0.95, 0.3, shape[0], dtype=torch.float64, device="cuda") if per_sample else 0.8
    coef = _coefficient_tensor(sde_coefficients(sig, 0.2, sigma_max=0.9), x, torch.float32)
    ref = run("eager", x_next.double(), x.double(), v.double(), coef.double(), dy.double())
    low = run("eager", x_next, x, v, coef, dy)
    got = run("triton", x_next, x, v, coef, dy)
    for g, lo, r in zip(got, low, ref, strict=True):
        assert g.device.type == "cuda" and g.dtype == lo.dtype
        err, eager_err = (g.double() - r).abs().max(), (lo.double() - r).abs().max()
        assert float(err) <= 2 * float(eager_err) + 1e-5 * float(r.abs().max()) + 1e-30


@pytest.mark.gpu
@requires_cuda
def test_cuda_auto_uses_triton_is_deterministic_and_ratio_is_exact() -> None:
    assert K.HAS_TRITON
    x, v, _ = inputs((8, 1024, 64), torch.bfloat16, "cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        step = rewardkit.sde_step(x, v, 0.9, 0.8, generator=gen)
    new = rewardkit.sde_log_prob(step.next, x, v.clone().requires_grad_(), 0.9, 0.8)
    assert torch.equal(new.detach(), step.log_prob)  # exp(Δℓ) == 1 exactly on the device
    via_triton = rewardkit.sde_log_prob(step.next, x, v, 0.9, 0.8, backend="triton")
    assert torch.equal(via_triton, step.log_prob)  # "auto" picked the Triton kernel
    # The torch-only chunked path also runs on CUDA tensors and agrees up to summation order.
    chunked = rewardkit.sde_log_prob(step.next, x, v, 0.9, 0.8, backend="cpu_fused")
    torch.testing.assert_close(chunked, step.log_prob, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@requires_cuda
def test_cuda_forward_and_backward_do_not_sync_with_the_host() -> None:
    x_next, x, v = inputs((4, 2048, 64), torch.bfloat16, "cuda")
    vv = v.clone().requires_grad_()
    sig = torch.full((4,), 0.9, device="cuda", dtype=torch.float64)
    for s in (0.9, sig):  # warm-up: Triton compiles one specialisation per coefficient layout
        rewardkit.sde_log_prob(x_next, x, vv, s, 0.8).sum().backward()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for s in (0.9, sig):  # float sigmas and per-sample device sigmas
            out = rewardkit.sde_log_prob(x_next, x, vv, s, 0.8)
            out.backward(torch.ones_like(out))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert vv.grad is not None and bool(torch.isfinite(vv.grad).all())


@pytest.mark.gpu
@requires_cuda
def test_cuda_compile_with_triton_backend() -> None:
    x_next, x, v = inputs((4, 256, 64), torch.float32, "cuda")

    def loss_fn(x_next, x, v):
        return rewardkit.sde_log_prob(x_next, x, v, 0.8, 0.7).exp().mean()

    v1, v2 = v.clone().requires_grad_(), v.clone().requires_grad_()
    torch.compile(loss_fn, fullgraph=True)(x_next, x, v1).backward()
    loss_fn(x_next, x, v2).backward()
    torch.testing.assert_close(v1.grad, v2.grad, rtol=1e-5, atol=1e-9)
