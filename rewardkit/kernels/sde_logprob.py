r"""Fused Gaussian log-prob of an SDE step, with a closed-form backward.

Every dynamics of :mod:`rewardkit.core.sde` is linear in the latent ``x`` and the velocity
``v``, so the per-sample log-prob of the next latent is

$$
\ell_b = \alpha_b\,\frac{1}{D}\sum_{d=1}^{D} r_{bd}^2 + \beta_b,\qquad
r_{bd} = x'_{bd} - c_{x,b}\,x_{bd} - c_{v,b}\,v_{bd},
$$

and its gradients are

$$
\frac{\partial \ell_b}{\partial v_{bd}} = -\frac{2\alpha_b c_{v,b}}{D}\,r_{bd},\qquad
\frac{\partial \ell_b}{\partial x_{bd}} = -\frac{2\alpha_b c_{x,b}}{D}\,r_{bd}.
$$

The coefficients ``(c_x, c_v, α, β)`` come from :func:`rewardkit.core.sde.sde_coefficients`
(one function for every path); this module only sees them as a packed ``(4, B')`` tensor
(``B'`` is 1 when every sample shares them, else ``B``). ``x'`` is treated as detached.

Three implementations, all *fused* in the sense that no full-size intermediate is created:

* ``"chunked"`` (torch only, any device; the default off CUDA): walks the flattened non-batch
  dimension in chunks of ``CHUNK_ELEMENTS``, computing ``r`` into one preallocated cache-sized
  buffer (two in-place ``addcmul`` passes) and reducing each chunk with a row-wise dot product.
  Backward: recompute ``r`` chunk by chunk and write the gradient in closed form. When every
  tensor that needs a gradient already has the compute dtype (fp32/fp64 inputs), the forward
  also copies ``r`` into a full-size buffer and the backward scales that buffer in place into
  ``grad_v``; the buffer *is* the gradient's storage, so this costs no extra peak memory and
  halves the work (see :class:`SDELogProbFunction`).
* ``"compiled"`` (opt-in): the same two formulas through ``torch.compile`` (inductor), one
  generated loop per pass; fastest on CPU but compiles on first use (~10-20 s on CPU).
* ``"triton"`` (CUDA, or CPU under ``TRITON_INTERPRET=1``): the forward kernel reads the three
  inputs once (any of fp32/bf16/fp16/fp64, upcast on load, accumulated in the coefficient
  dtype) and writes one partial sum per tile, a second tiny kernel reduces the partials in a
  fixed order (deterministic: the same inputs give bit-identical log-probs); the backward
  kernel reads the inputs once more and writes ``grad_v`` (and ``grad_x``) in their dtypes.

None of them calls ``.item()`` or otherwise syncs with the host (checked on CUDA with
``torch.cuda.set_sync_debug_mode("error")``). For ``torch.compile`` the implementations are
registered as the opaque custom ops ``rewardkit::sde_log_prob_fwd`` / ``rewardkit::sde_log_prob_bwd``
with an autograd formula; outside compilation a plain ``torch.autograd.Function`` calls them
directly (the custom-op dispatcher costs ~25 µs per call).
"""

import importlib.util
import os
from collections.abc import Callable, Iterator
from typing import Any, Literal, get_args

import torch
from torch import Tensor

# Triton is optional: the torch-only path works everywhere. It is found here, not imported:
# its kernels (sde_logprob_triton) load on the first call that asks for them.
HAS_TRITON = importlib.util.find_spec("triton") is not None

# Triton decides at decoration time whether kernels run in its CPU interpreter.
TRITON_INTERPRETED = HAS_TRITON and os.environ.get("TRITON_INTERPRET", "0") == "1"

__all__ = ["CHUNK_ELEMENTS", "HAS_TRITON", "TRITON_INTERPRETED", "Impl", "fused_sde_log_prob"]

Impl = Literal["chunked", "compiled", "triton"]
IMPLS: tuple[str, ...] = get_args(Impl)

# Elements per chunk of the torch path, over all batch rows together: 2^16 fp32 values are a
# 256 KiB buffer, which stays in L2 while the chunk's passes run over it. 2^15 … 2^17 measured
# alike on the project's 2-core machine; the smaller buffer keeps the peak extra memory low.
CHUNK_ELEMENTS = 1 << 16
# Triton tile: elements of one row handled by one program.
TRITON_BLOCK = 2048
TRITON_WARPS = 8
# Most partial sums per row that the finishing kernel reduces in one tile; beyond it (over
# 2^25 elements per sample) a torch reduction of the partials takes over.
TRITON_MAX_PARTIALS = 1 << 14


def _rows(t: Tensor) -> Tensor:
    """View ``t`` as ``(B, D)`` row-major (copies only if ``t`` is not contiguous)."""
    return t.reshape(t.shape[0], -1).contiguous()


def _chunk_columns(batch: int, width: int) -> int:
    return max(1, min(width, CHUNK_ELEMENTS // max(batch, 1)))


# ----------------------------------------------------------------------------------------------
# torch-only chunked implementation
# ----------------------------------------------------------------------------------------------


def _residual_into(buf: Tensor, xn: Tensor, x: Tensor, v: Tensor, neg_c_x: Tensor, neg_c_v: Tensor) -> Tensor:
    """``buf ← x' − c_x·x − c_v·v`` in buf's dtype: two passes over one cache-sized chunk."""
    torch.addcmul(xn, x, neg_c_x, out=buf)
    return buf.addcmul_(v, neg_c_v)


def _chunks(cols: int, *tensors: Tensor) -> Iterator[tuple[Tensor, ...]]:
    """Column chunks of `(B, D)` tensors as views (one C++ call per tensor, not per chunk)."""
    return zip(*(torch.split(t, cols, dim=1) for t in tensors), strict=True)


def _chunked_forward(
    x_next: Tensor, x: Tensor, v: Tensor, coef: Tensor, *, keep_residual: bool = False
) -> tuple[Tensor, Tensor | None]:
    """`(B,)` log-probs, and optionally the `(B, D)` residual r (in coef's dtype)."""
    xn2, x2, v2 = _rows(x_next), _rows(x), _rows(v)
    batch, width = x2.shape
    neg_c_x, neg_c_v = -coef[0].unsqueeze(1), -coef[1].unsqueeze(1)  # (B', 1)
    cols = _chunk_columns(batch, width)
    buf = torch.empty((batch, cols), dtype=coef.dtype, device=x2.device)
    partial = torch.empty(((width + cols - 1) // cols, batch), dtype=coef.dtype, device=x2.device)
    residual = torch.empty((batch, width), dtype=coef.dtype, device=x2.device) if keep_residual else None
    res_chunks = torch.split(residual, cols, dim=1) if residual is not None else None
    for i, (xn_c, x_c, v_c) in enumerate(_chunks(cols, xn2, x2, v2)):
        # The same ops on the same cache-resident buffer whether or not r is kept, so the
        # log-prob is bit-identical with and without grad (rollout vs training).
        r = _residual_into(buf[:, : x_c.shape[1]], xn_c, x_c, v_c, neg_c_x, neg_c_v)
        # Σ_d r² of the chunk as a row-wise dot product (no squared temporary).
        torch.linalg.vecdot(r, r, out=partial[i])
        if res_chunks is not None:
            res_chunks[i].copy_(r)
    # ℓ = α · (Σ r²)/D + β
    out = (coef[2] * (partial.sum(dim=0) / width) + coef[3]).expand(batch).contiguous()
    return out, residual


def _scale_residual(
    grad: Tensor,
    residual: Tensor,
    coef: Tensor,
    x: Tensor,
    v: Tensor,
    need_x: bool,
    need_v: bool,
) -> tuple[Tensor | None, Tensor | None]:
    """Backward from a kept residual: one pass; ``grad_v`` reuses the residual's storage."""
    batch, width = residual.shape
    k = grad.to(coef.dtype).view(batch, 1) * (coef[2].unsqueeze(1) * (-2.0 / width))
    grad_x = residual * (k * coef[0].unsqueeze(1)) if need_x else None  # before the in-place
    grad_v = residual.mul_(k * coef[1].unsqueeze(1)) if need_v else None
    return (
        None if grad_x is None else grad_x.view(x.shape),
        None if grad_v is None else grad_v.view(v.shape),
    )


def _chunked_backward(
    grad: Tensor,
    x_next: Tensor,
    x: Tensor,
    v: Tensor,
    coef: Tensor,
    need_x: bool,
    need_v: bool,
) -> tuple[Tensor | None, Tensor | None]:
    xn2, x2, v2 = _rows(x_next), _rows(x), _rows(v)
    batch, width = x2.shape
    neg_c_x, neg_c_v = -coef[0].unsqueeze(1), -coef[1].unsqueeze(1)  # (B', 1)
    # Closed form: ∂ℓ_b/∂v = g_b·(−2 α_b c_v,b / D)·r, likewise for x with c_x.
    k = grad.to(coef.dtype).view(batch, 1) * (coef[2].unsqueeze(1) * (-2.0 / width))
    k_v, k_x = k * coef[1].unsqueeze(1), k * coef[0].unsqueeze(1)  # (B, 1)
    grad_v = torch.empty_like(v2) if need_v else None
    grad_x = torch.empty_like(x2) if need_x else None
    cols = _chunk_columns(batch, width)
    buf = torch.empty((batch, cols), dtype=coef.dtype, device=x2.device)
    gv_chunks = torch.split(grad_v, cols, dim=1) if grad_v is not None else None
    gx_chunks = torch.split(grad_x, cols, dim=1) if grad_x is not None else None
    for i, (xn_c, x_c, v_c) in enumerate(_chunks(cols, xn2, x2, v2)):
        r = _residual_into(buf[:, : x_c.shape[1]], xn_c, x_c, v_c, neg_c_x, neg_c_v)
        if gv_chunks is not None:
            torch.mul(r, k_v, out=gv_chunks[i])  # cast to v's dtype on store
        if gx_chunks is not None:
            torch.mul(r, k_x, out=gx_chunks[i])
    return (
        None if grad_x is None else grad_x.view(x.shape),
        None if grad_v is None else grad_v.view(v.shape),
    )


# ----------------------------------------------------------------------------------------------
# torch.compile (inductor) implementation: one generated loop per pass, no chunking needed
# ----------------------------------------------------------------------------------------------


def _residual(xn: Tensor, x: Tensor, v: Tensor, coef: Tensor) -> Tensor:
    dtype = coef.dtype
    return xn.to(dtype) - coef[0].unsqueeze(1) * x.to(dtype) - coef[1].unsqueeze(1) * v.to(dtype)


def _compiled_forward_body(xn: Tensor, x: Tensor, v: Tensor, coef: Tensor) -> Tensor:
    r = _residual(xn, x, v, coef)  # inductor fuses this into the reduction: never materialised
    return (coef[2] * ((r * r).sum(dim=1) / x.shape[1]) + coef[3]).expand(x.shape[0])


def _compiled_backward_body(
    grad: Tensor, xn: Tensor, x: Tensor, v: Tensor, coef: Tensor, need_x: bool, need_v: bool
) -> tuple[Tensor | None, Tensor | None]:
    r = _residual(xn, x, v, coef)
    k = grad.to(coef.dtype) * coef[2] * (-2.0 / x.shape[1])  # (B,)
    grad_x = ((k * coef[0]).unsqueeze(1) * r).to(x.dtype) if need_x else None
    grad_v = ((k * coef[1]).unsqueeze(1) * r).to(v.dtype) if need_v else None
    return grad_x, grad_v


_COMPILED: dict[str, Callable[..., Any]] = {}


def _compiled(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compile(fn)`` once per process (dynamic shapes: one graph for every (B, D))."""
    if name not in _COMPILED:
        _COMPILED[name] = torch.compile(fn, dynamic=True, fullgraph=True)
    return _COMPILED[name]


def _compiled_forward(x_next: Tensor, x: Tensor, v: Tensor, coef: Tensor) -> Tensor:
    out: Tensor = _compiled("forward", _compiled_forward_body)(_rows(x_next), _rows(x), _rows(v), coef)
    return out.contiguous()


def _compiled_backward(
    grad: Tensor, x_next: Tensor, x: Tensor, v: Tensor, coef: Tensor, need_x: bool, need_v: bool
) -> tuple[Tensor | None, Tensor | None]:
    grad_x, grad_v = _compiled("backward", _compiled_backward_body)(
        grad, _rows(x_next), _rows(x), _rows(v), coef, need_x, need_v
    )
    return (
        None if grad_x is None else grad_x.view(x.shape),
        None if grad_v is None else grad_v.view(v.shape),
    )


# ----------------------------------------------------------------------------------------------
# dispatch by implementation, autograd, torch.compile registration
# ----------------------------------------------------------------------------------------------


def _forward(x_next: Tensor, x: Tensor, v: Tensor, coef: Tensor, impl: str) -> Tensor:
    if impl == "triton":
        from rewardkit.kernels.sde_logprob_triton import triton_forward

        if x.is_cuda:
            with torch.cuda.device(x.device):
                return triton_forward(x_next, x, v, coef)
        return triton_forward(x_next, x, v, coef)  # CPU tensors: TRITON_INTERPRET=1
    if impl == "compiled":
        return _compiled_forward(x_next, x, v, coef)
    return _chunked_forward(x_next, x, v, coef)[0]


def _backward(
    grad: Tensor,
    x_next: Tensor,
    x: Tensor,
    v: Tensor,
    coef: Tensor,
    impl: str,
    need_x: bool,
    need_v: bool,
) -> tuple[Tensor | None, Tensor | None]:
    if impl == "triton":
        from rewardkit.kernels.sde_logprob_triton import triton_backward

        if x.is_cuda:
            with torch.cuda.device(x.device):
                return triton_backward(grad, x_next, x, v, coef, need_x, need_v)
        return triton_backward(grad, x_next, x, v, coef, need_x, need_v)
    if impl == "compiled":
        return _compiled_backward(grad, x_next, x, v, coef, need_x, need_v)
    return _chunked_backward(grad, x_next, x, v, coef, need_x, need_v)


class SDELogProbFunction(torch.autograd.Function):
    r"""Autograd function for the fused log-prob ``ℓ_b = α_b·mean_d(r²) + β_b``.

    $$
    r = x' - c_x x - c_v v,\qquad
    \nabla_v \ell_b = -\tfrac{2\alpha_b c_{v,b}}{D}\, r_b,\qquad
    \nabla_x \ell_b = -\tfrac{2\alpha_b c_{x,b}}{D}\, r_b
    $$

    The forward saves its inputs; the backward recomputes ``r`` in one pass. Exception, the
    ``"chunked"`` CPU path when every tensor that needs a gradient already has the compute
    dtype (fp32/fp64): the forward also writes ``r`` into a full-size buffer and the backward
    scales that buffer in place into ``grad_v``, one pass instead of a recomputation. The
    buffer *is* the gradient's storage, so the peak memory is unchanged; a second backward
    (``retain_graph=True``) finds it consumed and recomputes. ``x'`` and the coefficients
    receive no gradient.

    Args (of ``apply``):
        x_next: `(B, ...)` next latent x' (treated as detached).
        x: `(B, ...)` current latent.
        v: `(B, ...)` velocity.
        coef: `(4, B')` packed ``(c_x, c_v, α, β)`` in the compute dtype, ``B' ∈ {1, B}``.
        impl: ``"chunked"``, ``"compiled"`` or ``"triton"``.

    Returns:
        `(B,)` log-prob per sample, in coef's dtype.
    """

    @staticmethod
    def forward(ctx: Any, x_next: Tensor, x: Tensor, v: Tensor, coef: Tensor, impl: str) -> Tensor:
        ctx.save_for_backward(x_next, x, v, coef)
        ctx.impl = impl
        ctx.residual = None
        need_x, need_v = bool(ctx.needs_input_grad[1]), bool(ctx.needs_input_grad[2])
        keep = (
            impl == "chunked"
            and (need_x or need_v)
            and (not need_x or x.dtype == coef.dtype)
            and (not need_v or v.dtype == coef.dtype)
        )
        if not keep:
            return _forward(x_next, x, v, coef, impl)
        out, ctx.residual = _chunked_forward(x_next, x, v, coef, keep_residual=True)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor | None, Tensor | None, None, None]:
        x_next, x, v, coef = ctx.saved_tensors
        need_x, need_v = bool(ctx.needs_input_grad[1]), bool(ctx.needs_input_grad[2])
        if ctx.residual is not None:
            residual, ctx.residual = ctx.residual, None  # consumed: storage becomes grad_v
            grad_x, grad_v = _scale_residual(grad, residual, coef, x, v, need_x, need_v)
        else:
            grad_x, grad_v = _backward(grad, x_next, x, v, coef, ctx.impl, need_x, need_v)
        return None, grad_x, grad_v, None, None


@torch.library.custom_op("rewardkit::sde_log_prob_fwd", mutates_args=())
def _op_forward(x_next: Tensor, x: Tensor, v: Tensor, coef: Tensor, impl: str) -> Tensor:
    return _forward(x_next, x, v, coef, impl)


@_op_forward.register_fake
def _(x_next: Tensor, x: Tensor, v: Tensor, coef: Tensor, impl: str) -> Tensor:
    return coef.new_empty(x.shape[0])


@torch.library.custom_op("rewardkit::sde_log_prob_bwd", mutates_args=())
def _op_backward(
    grad: Tensor,
    x_next: Tensor,
    x: Tensor,
    v: Tensor,
    coef: Tensor,
    impl: str,
    need_x: bool,
    need_v: bool,
) -> tuple[Tensor, Tensor]:
    grad_x, grad_v = _backward(grad, x_next, x, v, coef, impl, need_x, need_v)
    # Custom ops return tensors: an empty one stands for "no gradient".
    return (
        x.new_empty(0) if grad_x is None else grad_x,
        v.new_empty(0) if grad_v is None else grad_v,
    )


@_op_backward.register_fake
def _(
    grad: Tensor,
    x_next: Tensor,
    x: Tensor,
    v: Tensor,
    coef: Tensor,
    impl: str,
    need_x: bool,
    need_v: bool,
) -> tuple[Tensor, Tensor]:
    return (
        x.new_empty(x.shape) if need_x else x.new_empty(0),
        v.new_empty(v.shape) if need_v else v.new_empty(0),
    )


def _op_setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x_next, x, v, coef, impl = inputs
    ctx.save_for_backward(x_next, x, v, coef)
    ctx.impl = impl


def _op_autograd(ctx: Any, grad: Tensor) -> tuple[None, Tensor | None, Tensor | None, None, None]:
    x_next, x, v, coef = ctx.saved_tensors
    need_x, need_v = bool(ctx.needs_input_grad[1]), bool(ctx.needs_input_grad[2])
    grad_x, grad_v = torch.ops.rewardkit.sde_log_prob_bwd(grad, x_next, x, v, coef, ctx.impl, need_x, need_v)
    return None, grad_x if need_x else None, grad_v if need_v else None, None, None


torch.library.register_autograd("rewardkit::sde_log_prob_fwd", _op_autograd, setup_context=_op_setup_context)


def fused_sde_log_prob(x_next: Tensor, x: Tensor, v: Tensor, coef: Tensor, *, impl: Impl) -> Tensor:
    """Fused ``ℓ_b = α_b·mean_d((x' − c_x x − c_v v)²) + β_b`` with closed-form gradients.

    Low-level entry point: arguments are assumed validated (same shapes, one device, packed
    coefficients in the compute dtype). Use :func:`rewardkit.sde_log_prob` instead.

    Args:
        x_next: `(B, ...)` next latent x' (detached).
        x: `(B, ...)` current latent.
        v: `(B, ...)` velocity.
        coef: `(4, B')` rows ``(c_x, c_v, α, β)``, ``B' ∈ {1, B}``, on x's device.
        impl: ``"chunked"`` (torch only), ``"compiled"`` (torch.compile) or ``"triton"``.

    Returns:
        `(B,)` log-probs in coef's dtype.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    x_next = x_next.detach()
    if torch.compiler.is_compiling():
        # Opaque custom op: dynamo/inductor call it as-is and use the registered backward.
        out: Tensor = torch.ops.rewardkit.sde_log_prob_fwd(x_next, x, v, coef, impl)
        return out
    # Bound through a typed name: torch versions differ in whether Function.apply is annotated.
    apply: Callable[..., Tensor] = SDELogProbFunction.apply
    return apply(x_next, x, v, coef, impl)
