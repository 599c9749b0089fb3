"""Whole-group statistics across ranks: gather a batch, compute on it, keep the local slice.

Groups of rollouts are spread over ranks, so advantages, GDPO normalisation and DAR weights must
be computed on the gathered batch (never on a rank's partial groups); then every rank takes its
own rows back. On one process these helpers are the identity, so single- and multi-process runs
give identical numbers.
"""

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["gather_batch", "rank_and_world_size"]


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, or ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_batch(tensors: Sequence[Tensor]) -> tuple[list[Tensor], slice]:
    """Concatenate each tensor over all ranks (in rank order) along dim 0.

    Ranks may hold different numbers of rows. All tensors must have the same number of rows on
    a rank.

    Args:
        tensors: per-rank tensors of shape `(n_rank, ...)`.

    Returns:
        ``(gathered, local)``: the `(sum n_rank, ...)` tensors, and the slice of this rank's rows.
    """
    if not tensors:
        raise ValueError("tensors is empty; pass at least one tensor to gather")
    rows = tensors[0].shape[0]
    if any(t.shape[0] != rows for t in tensors):
        raise ValueError(
            f"every tensor must have the same number of rows on a rank, got {[t.shape[0] for t in tensors]}"
        )
    rank, world = rank_and_world_size()
    if world == 1:
        return list(tensors), slice(0, rows)
    device = tensors[0].device
    counts = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([rows], dtype=torch.long, device=device))
    sizes = [int(c.item()) for c in counts]
    longest = max(sizes)
    gathered = []
    for t in tensors:
        padded = torch.zeros((longest, *t.shape[1:]), dtype=t.dtype, device=t.device)
        padded[:rows] = t
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        gathered.append(torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)]))
    start = sum(sizes[:rank])
    return gathered, slice(start, start + rows)
