"""Whole-group statistics across ranks: gather a batch, compute on it, keep the local slice.

Groups of rollouts are spread over ranks, so advantages, GDPO normalisation and DAR weights must
be computed on the gathered batch (never on a rank's partial groups); then every rank takes its
own rows back. On one process these helpers are the identity, so single- and multi-process runs
give identical numbers.

:func:`gather_batch` concatenates tensors in rank order. :func:`gather_samples` also gathers
lists of strings (prompts, ids) and, given each sample's global index, returns the batch in
*single-process order*: sorted by that index, i.e. exactly the batch one process would hold if
it had produced every sample itself, whatever the sharding. Any function of the whole batch
(e.g. ``group_advantages``) then gives bitwise the same values on 1 or N processes, and
:meth:`GatheredBatch.local` hands each rank its own rows back.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast, overload

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["GatheredBatch", "gather_batch", "gather_samples", "rank_and_world_size"]


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
    gathered = [_all_gather_rows(t, sizes) for t in tensors]
    start = sum(sizes[:rank])
    return gathered, slice(start, start + rows)


def _all_gather_rows(t: Tensor, sizes: Sequence[int]) -> Tensor:
    """Concatenate ``t`` (this rank's ``(sizes[rank], ...)`` rows) over all ranks, in rank order."""
    longest = max(sizes)
    if longest == 0:  # nothing anywhere (same decision on every rank: no collective)
        return t.new_empty((0, *t.shape[1:]))
    wire = t.to(torch.uint8) if t.dtype == torch.bool else t  # not every backend sends bool
    padded = torch.zeros((longest, *t.shape[1:]), dtype=wire.dtype, device=t.device)
    padded[: t.shape[0]] = wire
    parts = [torch.empty_like(padded) for _ in range(len(sizes))]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)]).to(t.dtype)


BatchT = TypeVar("BatchT", dict[str, Tensor], list[Tensor])


@dataclass(frozen=True)
class GatheredBatch(Generic[BatchT]):
    """The batch of all ranks, returned by :func:`gather_samples`.

    Attributes:
        tensors: the gathered tensors, `(sum(sizes), ...)` each, as a dict when a mapping was
            passed and as a list when a sequence was.
        strings: the gathered strings in the same row order, or ``None`` if none were passed.
        order: the gathered global indices in row order (ascending), or ``None`` without
            ``order``.
        mine: `(sizes[rank],)` int64 positions of this rank's rows in the gathered batch, in
            this rank's local row order: ``gathered[mine]`` are the local rows.
        sizes: number of rows held by each rank, in rank order.
    """

    tensors: BatchT
    strings: list[str] | None
    order: Tensor | None
    mine: Tensor
    sizes: tuple[int, ...]

    @property
    def total(self) -> int:
        """Number of rows of the gathered batch (all ranks together)."""
        return sum(self.sizes)

    def local(self, values: Tensor) -> Tensor:
        """This rank's rows of a per-sample result on the gathered batch, in local row order.

        Args:
            values: `(total, ...)` values computed on the gathered batch (e.g. advantages).

        Returns:
            `(sizes[rank], ...)` rows, aligned with the tensors this rank passed in.
        """
        if not isinstance(values, Tensor) or values.ndim == 0 or values.shape[0] != self.total:
            got = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(f"values must have {self.total} rows (one per gathered sample), got {got}")
        return values[self.mine.to(values.device)]


@dataclass(frozen=True)
class _Spec:
    """What one rank passes, compared between ranks before any tensor is sent."""

    kind: str  # "mapping" or "sequence"
    tensors: tuple[tuple[str, str, tuple[int, ...]], ...]  # (name, dtype, trailing shape)
    has_strings: bool
    has_order: bool


@dataclass(frozen=True)
class _Local:
    """One rank's checked inputs."""

    names: list[str]
    tensors: list[Tensor]
    strings: list[str] | None
    order: Tensor | None
    rows: int
    kind: str

    def spec(self) -> _Spec:
        """The description the other ranks compare against."""
        tensors = tuple(
            (n, str(t.dtype), tuple(t.shape[1:])) for n, t in zip(self.names, self.tensors, strict=True)
        )
        return _Spec(self.kind, tensors, self.strings is not None, self.order is not None)


@dataclass(frozen=True)
class _Info:
    """What every rank sends first: its problem with the call, or its row count, spec and strings."""

    problem: tuple[str, str] | None = None  # (exception class name, message)
    rows: int = 0
    spec: _Spec | None = None
    strings: list[str] | None = None


def _check_local(tensors: Mapping[str, Tensor] | Sequence[Tensor], strings: object, order: object) -> _Local:
    """Check one rank's arguments; raise ``TypeError``/``ValueError`` naming the argument."""
    if isinstance(tensors, Mapping):
        names = list(tensors)
        if not all(isinstance(n, str) for n in names):
            raise TypeError(f"tensors: every key must be a str, got keys {names!r}")
        values = list(tensors.values())
    elif isinstance(tensors, Sequence):
        values = list(tensors)
        names = [str(i) for i in range(len(values))]
    else:
        raise TypeError(
            f"tensors must be a mapping name -> Tensor or a sequence of tensors, got {type(tensors).__name__}"
        )
    rows: list[tuple[str, int]] = []
    for name, t in zip(names, values, strict=True):
        if not isinstance(t, Tensor):
            raise TypeError(f"tensors[{name!r}] must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim == 0:
            raise ValueError(f"tensors[{name!r}] must have a batch dimension, got a 0-d tensor")
        rows.append((f"tensors[{name!r}]", t.shape[0]))
    texts: list[str] | None = None
    if strings is not None:
        if isinstance(strings, str) or not isinstance(strings, Sequence):
            raise TypeError(
                f"strings must be a sequence of str (one per sample), got {type(strings).__name__}"
            )
        texts = list(strings)
        bad = next((i for i, x in enumerate(texts) if not isinstance(x, str)), None)
        if bad is not None:
            raise TypeError(f"strings[{bad}] must be a str, got {type(texts[bad]).__name__}")
        rows.append(("strings", len(texts)))
    if order is not None:
        if not isinstance(order, Tensor):
            raise TypeError(
                f"order must be a torch.Tensor of int64 global indices, got {type(order).__name__}"
            )
        if order.dtype != torch.int64:
            raise TypeError(
                f"order must be an int64 tensor of global sample indices, got {order.dtype}; use .long()"
            )
        if order.ndim != 1:
            raise ValueError(
                f"order must be 1-D (one global index per sample), got shape {tuple(order.shape)}"
            )
        rows.append(("order", order.shape[0]))
    if not rows:
        raise ValueError("nothing to gather: pass at least one tensor or strings")
    if len({n for _, n in rows}) != 1:
        raise ValueError(
            "every input must have one row per local sample, got "
            + ", ".join(f"{name}: {n}" for name, n in rows)
        )
    kind = "mapping" if isinstance(tensors, Mapping) else "sequence"
    return _Local(names, values, texts, order, rows[0][1], kind)


def _check_unique(order: Tensor, sizes: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Stable argsort of the gathered ``order``; raise if a global index appears twice."""
    sorted_order, perm = torch.sort(order, stable=True)
    dup = (sorted_order[1:] == sorted_order[:-1]).nonzero()
    if dup.numel():
        value = int(sorted_order[int(dup[0, 0])])
        where = (order == value).nonzero().flatten().cpu()
        bounds = torch.tensor(list(sizes)).cumsum(0)
        ranks = sorted({int(r) for r in torch.searchsorted(bounds, where, right=True)})
        raise ValueError(
            f"order: global index {value} appears {where.numel()} times (held by rank(s) {ranks}), "
            f"{dup.shape[0]} duplicate(s) in all; every sample needs a unique global index"
        )
    return sorted_order, perm


def _check_same_everywhere(specs: Sequence[_Spec]) -> None:
    """Raise unless every rank described the same inputs (keys, dtypes, trailing shapes)."""
    first = specs[0]
    for r, spec in enumerate(specs[1:], start=1):
        if spec.kind != first.kind:
            raise TypeError(f"tensors: rank 0 passes a {first.kind} but rank {r} passes a {spec.kind}")
        names0, names = [t[0] for t in first.tensors], [t[0] for t in spec.tensors]
        if sorted(names0) != sorted(names):
            if spec.kind == "mapping":
                raise ValueError(f"tensors: keys {names0} on rank 0 but {names} on rank {r}")
            raise ValueError(f"tensors: {len(names0)} tensor(s) on rank 0 but {len(names)} on rank {r}")
        theirs = {name: (dtype, trailing) for name, dtype, trailing in spec.tensors}
        for name, dtype, trailing in first.tensors:
            other_dtype, other_trailing = theirs[name]
            if dtype != other_dtype:
                raise TypeError(
                    f"tensors[{name!r}]: dtype {dtype} on rank 0 but {other_dtype} on rank {r}; "
                    "every rank must pass the same dtype"
                )
            if trailing != other_trailing:
                raise ValueError(
                    f"tensors[{name!r}]: shape (n, *{list(trailing)}) on rank 0 but "
                    f"(n, *{list(other_trailing)}) on rank {r}; only the batch dimension may differ"
                )
        for arg, here, there in (
            ("strings", first.has_strings, spec.has_strings),
            ("order", first.has_order, spec.has_order),
        ):
            if here != there:
                given, missing = (0, r) if here else (r, 0)
                raise ValueError(
                    f"{arg} is given on rank {given} but not on rank {missing}; pass it on every rank"
                )


def _exchange(
    tensors: Mapping[str, Tensor] | Sequence[Tensor], strings: object, order: object, world: int
) -> tuple[_Local, list[Tensor], list[str] | None, Tensor | None, list[int]]:
    """Check the call on every rank, then gather strings, tensors and global indices."""
    local: _Local | None = None
    try:
        local = _check_local(tensors, strings, order)
    except (TypeError, ValueError) as error:  # re-raised below on every rank, so none hangs
        info = _Info(problem=(type(error).__name__, str(error)))
    else:
        info = _Info(rows=local.rows, spec=local.spec(), strings=local.strings)
    received: list[_Info | None] = [None] * world
    dist.all_gather_object(received, info)
    infos = cast(list[_Info], received)
    for r, other in enumerate(infos):
        if other.problem is not None:
            kind, message = other.problem
            raise (TypeError if kind == "TypeError" else ValueError)(f"rank {r}: {message}")
    assert local is not None
    specs = [i.spec for i in infos if i.spec is not None]
    _check_same_everywhere(specs)
    sizes = [i.rows for i in infos]
    texts = None if local.strings is None else [x for i in infos for x in i.strings or ()]
    # Collectives run in rank 0's key order on every rank; outputs come back in local key order.
    by_name = dict(zip(local.names, local.tensors, strict=True))
    gathered = {name: _all_gather_rows(by_name[name], sizes) for name, _, _ in specs[0].tensors}
    all_order = None if local.order is None else _all_gather_rows(local.order, sizes)
    return local, [gathered[n] for n in local.names], texts, all_order, sizes


def _reorder(
    local: _Local,
    gathered: list[Tensor],
    texts: list[str] | None,
    all_order: Tensor | None,
    sizes: Sequence[int],
    rank: int,
) -> tuple[list[Tensor], list[str] | None, Tensor | None, Tensor]:
    """Sort the gathered rows by global index (when given); return them and this rank's positions."""
    start, rows = sum(sizes[:rank]), sizes[rank]
    if all_order is None:
        device = gathered[0].device if gathered else torch.device("cpu")
        return gathered, texts, None, torch.arange(start, start + rows, device=device)
    sorted_order, perm = _check_unique(all_order, sizes)
    position = torch.empty_like(perm)
    position[perm] = torch.arange(perm.shape[0], device=perm.device)
    out = [t[perm.to(t.device)] for t in gathered]
    if texts is not None:
        texts = [texts[i] for i in perm.tolist()]
    return out, texts, sorted_order, position[start : start + rows]


@overload
def gather_samples(
    tensors: Mapping[str, Tensor], *, strings: Sequence[str] | None = None, order: Tensor | None = None
) -> GatheredBatch[dict[str, Tensor]]: ...


@overload
def gather_samples(
    tensors: Sequence[Tensor], *, strings: Sequence[str] | None = None, order: Tensor | None = None
) -> GatheredBatch[list[Tensor]]: ...


def gather_samples(
    tensors: Mapping[str, Tensor] | Sequence[Tensor],
    *,
    strings: Sequence[str] | None = None,
    order: Tensor | None = None,
) -> GatheredBatch[dict[str, Tensor]] | GatheredBatch[list[Tensor]]:
    """Gather per-sample tensors and strings from all ranks, optionally in single-process order.

    Each rank passes its own samples: tensors of shape `(n_rank, ...)` (``n_rank`` may differ
    between ranks, trailing shapes and dtypes may not), optionally `n_rank` strings (prompts,
    ids) and an `(n_rank,)` int64 ``order``: each sample's **global index**, e.g. its position
    in the batch one process would have generated, or the sampler's dataset index.

    Without ``order`` the rows are concatenated in rank order (as :func:`gather_batch`). With
    it, every output is sorted by global index, so the result is the batch a single process
    would have produced; any function of it (``group_advantages`` on ``group_ids``) is then
    bitwise identical on 1 and N processes. Use :meth:`GatheredBatch.local` (or
    ``batch.mine``, no longer a contiguous slice after sorting) to take this rank's rows back.

    Strings travel with ``all_gather_object`` (with NCCL the current CUDA device must be set,
    as usual); tensors with ``all_gather`` on their own device. Gathered tensors are detached
    copies. Argument problems are exchanged first, so a bad call on one rank raises the same
    error (prefixed by the rank) on every rank instead of hanging the others. Without an
    initialised process group (world size 1) the inputs come back as they are (sorted by
    ``order`` when given) and ``mine`` is every row.

    Args:
        tensors: a mapping name -> tensor (same keys on every rank) or a sequence of tensors
            (same length on every rank), each `(n_rank, ...)`; may be empty if ``strings`` is
            given.
        strings: `n_rank` strings to gather alongside, or ``None``.
        order: `(n_rank,)` int64 global index of each local sample, unique over all ranks, or
            ``None`` to keep the rank order.

    Returns:
        A :class:`GatheredBatch` with the gathered ``tensors`` (dict or list, as passed),
        ``strings``, ``order`` (ascending), ``mine`` and ``sizes``.

    Raises:
        TypeError: an input of the wrong type, a non-int64 ``order``, or a dtype that differs
            between ranks.
        ValueError: inputs with different row counts, nothing to gather, keys / trailing
            shapes / presence of ``strings`` or ``order`` differing between ranks, or a global
            index held twice.

    Example:
        >>> import torch
        >>> from rewardkit.training import gather_samples
        >>> batch = gather_samples({"reward": torch.tensor([0.5, 0.1, 0.9])},
        ...                        strings=["c", "a", "b"], order=torch.tensor([2, 0, 1]))
        >>> batch.tensors["reward"], batch.strings, batch.mine
        (tensor([0.1000, 0.9000, 0.5000]), ['a', 'b', 'c'], tensor([2, 0, 1]))
        >>> batch.local(batch.tensors["reward"] * 10)  # back in local row order
        tensor([5., 1., 9.])
    """
    rank, world = rank_and_world_size()
    if world == 1:
        local = _check_local(tensors, strings, order)
        gathered, texts, all_order, sizes = local.tensors, local.strings, local.order, [local.rows]
    else:
        local, gathered, texts, all_order, sizes = _exchange(tensors, strings, order, world)
    out, texts, sorted_order, mine = _reorder(local, gathered, texts, all_order, sizes, rank)
    if isinstance(tensors, Mapping):
        named = dict(zip(local.names, out, strict=True))
        return GatheredBatch(named, texts, sorted_order, mine, tuple(sizes))
    return GatheredBatch(list(out), texts, sorted_order, mine, tuple(sizes))
