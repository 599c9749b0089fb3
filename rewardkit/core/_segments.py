"""Vectorised per-group (segment) reductions, so no function loops over samples or groups.

Groups are given as arbitrary integer labels; `group_index` maps them to dense indices
``0 … G-1`` once, and the reductions are ``index_add`` scatters, which autograd differentiates.
"""

from typing import NamedTuple

import torch
from torch import Tensor


class GroupIndex(NamedTuple):
    """Dense group indexing of a batch.

    Attributes:
        inverse: `(N,)` dense group index of each sample, in ``0 … num_groups-1``.
        counts: `(G,)` number of samples in each group.
        num_groups: number of distinct groups G.
    """

    inverse: Tensor
    counts: Tensor
    num_groups: int


def group_index(group_ids: Tensor) -> GroupIndex:
    """Map arbitrary integer group labels to dense indices and count each group's members."""
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    return GroupIndex(inverse, counts, int(counts.shape[0]))


def segment_sum(values: Tensor, groups: GroupIndex) -> Tensor:
    """Sum ``values`` (`(N, ...)`) over each group: returns `(G, ...)`."""
    out = values.new_zeros((groups.num_groups, *values.shape[1:]))
    return out.index_add(0, groups.inverse, values)


def segment_mean(values: Tensor, groups: GroupIndex, counts: Tensor | None = None) -> Tensor:
    """Mean of ``values`` (`(N, ...)`) over each group; ``counts`` overrides the member counts."""
    n = groups.counts if counts is None else counts
    n = n.to(values.dtype).reshape(-1, *([1] * (values.ndim - 1)))
    return segment_sum(values, groups) / n


def segment_is_constant(values: Tensor, groups: GroupIndex, valid: Tensor | None = None) -> Tensor:
    """`(G, ...)` boolean: whether every (``valid``) member of a group holds the same value.

    Used to return exactly zero advantages for constant groups, where ``x - mean(x)`` would
    otherwise leave rounding residue of order ``eps·|x|`` divided by the std floor.
    """
    shape = (groups.num_groups, *values.shape[1:])
    index = groups.inverse.reshape(-1, *([1] * (values.ndim - 1))).expand_as(values)
    detached = values.detach()
    high = detached if valid is None else detached.masked_fill(~valid, -torch.inf)
    low = detached if valid is None else detached.masked_fill(~valid, torch.inf)
    hi = detached.new_full(shape, -torch.inf).scatter_reduce(0, index, high, "amax")
    lo = detached.new_full(shape, torch.inf).scatter_reduce(0, index, low, "amin")
    return hi == lo
