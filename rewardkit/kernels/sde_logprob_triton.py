"""Triton kernels of the fused SDE log-prob; imported only when ``impl="triton"`` runs.

The eager torch reference and the dispatch live in
[`sde_logprob`][rewardkit.kernels.sde_logprob]; this module holds the two Triton programs
(forward partial sums and their finishing reduction, and the backward) and their launchers.
Importing it imports triton, which is why ``import rewardkit`` does not.
"""

import torch
import triton
import triton.language as tl
from torch import Tensor

from rewardkit.kernels.sde_logprob import TRITON_BLOCK, TRITON_MAX_PARTIALS, TRITON_WARPS, _rows

__all__ = ["triton_backward", "triton_forward"]


@triton.jit  # type: ignore[untyped-decorator]
def _tile_residual(xn_ptr, x_ptr, v_ptr, c_x, c_v, row, blk, width, block: tl.constexpr):  # type: ignore[no-untyped-def]
    # r = x_next − (c_x·x + c_v·v) on one tile of one row, with the tile's offsets and mask.
    cols = blk * block + tl.arange(0, block)
    mask = cols < width
    offs = row * width + cols
    # Upcast on load: inputs may be bf16/fp16/fp32/fp64, arithmetic is in coef's dtype.
    xn = tl.load(xn_ptr + offs, mask=mask, other=0.0).to(c_x.dtype)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(c_x.dtype)
    v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(c_x.dtype)
    return xn - (c_x * x + c_v * v), offs, mask  # masked lanes: 0 − (c·0 + c·0) = 0


@triton.jit  # type: ignore[untyped-decorator]
def _fwd_kernel(  # type: ignore[no-untyped-def]  # Triton reads the annotations: only tl.constexpr
    xn_ptr,
    x_ptr,
    v_ptr,
    coef_ptr,
    partial_ptr,
    width,
    num_blocks,
    coef_row,
    coef_col,
    block: tl.constexpr,
):
    # One program: block columns of one row b. Writes Σ r² of its tile to partial[b, blk].
    blk = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    c_x = tl.load(coef_ptr + row * coef_col)
    c_v = tl.load(coef_ptr + coef_row + row * coef_col)
    r, _, _ = _tile_residual(xn_ptr, x_ptr, v_ptr, c_x, c_v, row, blk, width, block)
    tl.store(partial_ptr + row * num_blocks + blk, tl.sum(r * r, axis=0))


@triton.jit  # type: ignore[untyped-decorator]
def _finish_kernel(  # type: ignore[no-untyped-def]
    partial_ptr,
    coef_ptr,
    out_ptr,
    width,
    num_blocks,
    coef_row,
    coef_col,
    block: tl.constexpr,
):
    # One program per row: fixed-order sum of its ≤ block partials, then ℓ = α·Σ/width + β.
    # (No loop with a runtime bound: Triton's CPU interpreter cannot run one with numpy 2.)
    row = tl.program_id(0).to(tl.int64)
    idx = tl.arange(0, block)
    total = tl.sum(tl.load(partial_ptr + row * num_blocks + idx, mask=idx < num_blocks, other=0.0), axis=0)
    alpha = tl.load(coef_ptr + 2 * coef_row + row * coef_col)
    beta = tl.load(coef_ptr + 3 * coef_row + row * coef_col)
    tl.store(out_ptr + row, alpha * (total / width) + beta)


@triton.jit  # type: ignore[untyped-decorator]
def _bwd_kernel(  # type: ignore[no-untyped-def]
    g_ptr,
    xn_ptr,
    x_ptr,
    v_ptr,
    coef_ptr,
    gx_ptr,
    gv_ptr,
    width,
    coef_row,
    coef_col,
    need_x: tl.constexpr,
    need_v: tl.constexpr,
    block: tl.constexpr,
):
    # One pass: recompute r for the tile and write g·(−2α c / width)·r in the input dtype.
    blk = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    c_x = tl.load(coef_ptr + row * coef_col)
    c_v = tl.load(coef_ptr + coef_row + row * coef_col)
    alpha = tl.load(coef_ptr + 2 * coef_row + row * coef_col)
    k = tl.load(g_ptr + row).to(c_x.dtype) * alpha * -2.0 / width
    r, offs, mask = _tile_residual(xn_ptr, x_ptr, v_ptr, c_x, c_v, row, blk, width, block)
    if need_v:
        tl.store(gv_ptr + offs, (k * c_v * r).to(gv_ptr.dtype.element_ty), mask=mask)
    if need_x:
        tl.store(gx_ptr + offs, (k * c_x * r).to(gx_ptr.dtype.element_ty), mask=mask)


def _coef_strides(coef: Tensor) -> tuple[int, int]:
    """(stride between coefficient rows, stride between samples: 0 when shared)."""
    return coef.stride(0), (coef.stride(1) if coef.shape[1] > 1 else 0)


def _grid_blocks(width: int) -> int:
    return (width + TRITON_BLOCK - 1) // TRITON_BLOCK


def triton_forward(x_next: Tensor, x: Tensor, v: Tensor, coef: Tensor) -> Tensor:
    """Per-sample log-probs: per-tile partial sums of r², then one finishing program per row."""
    xn2, x2, v2 = _rows(x_next), _rows(x), _rows(v)
    batch, width = x2.shape
    num_blocks = _grid_blocks(width)
    partial = torch.empty((batch, num_blocks), dtype=coef.dtype, device=x2.device)
    row_stride, col_stride = _coef_strides(coef)
    _fwd_kernel[(num_blocks, batch)](
        xn2,
        x2,
        v2,
        coef,
        partial,
        width,
        num_blocks,
        row_stride,
        col_stride,
        block=TRITON_BLOCK,
        num_warps=TRITON_WARPS,
    )
    if num_blocks > TRITON_MAX_PARTIALS:  # pragma: no cover - > 32 M elements per sample
        return (coef[2] * (partial.sum(dim=1) / width) + coef[3]).expand(batch).contiguous()
    out = torch.empty(batch, dtype=coef.dtype, device=x2.device)
    _finish_kernel[(batch,)](
        partial,
        coef,
        out,
        width,
        num_blocks,
        row_stride,
        col_stride,
        block=max(16, triton.next_power_of_2(num_blocks)),
        num_warps=1 if num_blocks <= 1024 else 4,
    )
    return out


def triton_backward(
    grad: Tensor,
    x_next: Tensor,
    x: Tensor,
    v: Tensor,
    coef: Tensor,
    need_x: bool,
    need_v: bool,
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients with respect to ``x`` and ``v`` (each only if needed), one pass over the tiles."""
    xn2, x2, v2 = _rows(x_next), _rows(x), _rows(v)
    batch, width = x2.shape
    grad_v = torch.empty_like(v2) if need_v else None
    grad_x = torch.empty_like(x2) if need_x else None
    row_stride, col_stride = _coef_strides(coef)
    _bwd_kernel[(_grid_blocks(width), batch)](
        grad.contiguous(),
        xn2,
        x2,
        v2,
        coef,
        x2 if grad_x is None else grad_x,  # placeholder pointer, never written (NEED_X=False)
        v2 if grad_v is None else grad_v,
        width,
        row_stride,
        col_stride,
        need_x=need_x,
        need_v=need_v,
        block=TRITON_BLOCK,
        num_warps=TRITON_WARPS,
    )
    return (
        None if grad_x is None else grad_x.view(x.shape),
        None if grad_v is None else grad_v.view(v.shape),
    )
