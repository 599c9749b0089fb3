"""recipes/_common.py: seeds, data order and the per-step sample plan."""

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

from rewardkit.recipes import _common as rc
from rewardkit.recipes.config import ConfigError
from rewardkit.training.fsdp import FSDPSettings


@given(st.lists(st.integers(0, 2**31), min_size=1, max_size=4))
def test_derive_seed_is_deterministic_63_bit_and_order_sensitive(parts) -> None:
    seed = rc.derive_seed(*parts)
    assert seed == rc.derive_seed(*parts)
    assert 0 <= seed < 2**63
    if len(parts) > 1 and parts[0] != parts[-1]:
        assert seed != rc.derive_seed(*reversed(parts))


@given(st.integers(1, 200), st.integers(0, 1000), st.integers(0, 50))
def test_data_order_is_a_seeded_permutation(n, seed, cycle) -> None:
    order = rc.data_order(n, seed, cycle)
    assert sorted(order) == list(range(n))
    assert order == rc.data_order(n, seed, cycle)


def test_data_order_changes_between_passes() -> None:
    assert rc.data_order(64, 0, 0) != rc.data_order(64, 0, 1)


@given(st.integers(1, 6), st.integers(1, 4), st.integers(1, 8))
def test_chunk_plan_partitions_every_step_the_same_whatever_the_world(chunks, world, per) -> None:
    total = chunks * world * per
    plans = [rc.chunk_plan(total, chunks, rank, world) for rank in range(world)]
    # every sample exactly once, one list per optimizer step on each process
    flat = sorted(i for plan in plans for step in plan for i in step)
    assert flat == list(range(total))
    assert all(len(plan) == chunks and all(len(s) == per for s in plan) for plan in plans)
    # step c covers the same samples as on a single process
    single = rc.chunk_plan(total, chunks, 0, 1)
    for c in range(chunks):
        assert sorted(i for plan in plans for i in plan[c]) == single[c]


def test_chunk_plan_refuses_an_uneven_split() -> None:
    with pytest.raises(ConfigError, match="split evenly"):
        rc.chunk_plan(10, 3, 0, 1)


def _dist(rank: int, world: int, sharded: bool) -> rc.Dist:
    return rc.Dist(None, rank, world, torch.device("cpu"), FSDPSettings() if sharded else None)


@given(st.integers(0, 40), st.integers(1, 8), st.booleans())
def test_rank_positions_cover_every_item_once_and_pad_sharded_ranks_equally(n, world, sharded) -> None:
    shares = [rc.rank_positions(n, _dist(r, world, sharded)) for r in range(world)]
    kept = sorted(k for share in shares for k, keep in share if keep)
    assert kept == list(range(n))
    if sharded and world > 1:  # every process calls the denoiser equally often
        assert {len(share) for share in shares} == {-(-n // world)}
        assert all(k == 0 for share in shares for k, keep in share if not keep)
    else:
        assert all(keep for share in shares for _, keep in share)


def test_unequal_forward_counts_are_refused_by_name() -> None:
    rc.check_same_forward_count([3, 3, 3], "rollout", fix="-")
    with pytest.raises(ConfigError, match=r"rollout plan gives the processes \[2, 3\] calls; do this"):
        rc.check_same_forward_count([2, 3], "rollout", fix="do this")


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 6))
def test_sft_accumulation_keeps_the_instances_per_step_whatever_the_world(world, batch, steps) -> None:
    from rewardkit.recipes.config import SFTTrainConfig
    from rewardkit.recipes.sft import accumulation_steps

    global_batch = world * batch * steps
    train = SFTTrainConfig(batch_size=batch, global_batch_size=global_batch)
    assert world * batch * accumulation_steps(train, world) == global_batch
    assert accumulation_steps(SFTTrainConfig(gradient_accumulation_steps=steps), world) == steps
    with pytest.raises(ConfigError, match="not both"):
        accumulation_steps(
            SFTTrainConfig(global_batch_size=global_batch, gradient_accumulation_steps=2), world
        )
    if world * batch > 1:
        with pytest.raises(ConfigError, match="must be a multiple of processes"):
            accumulation_steps(SFTTrainConfig(batch_size=batch, global_batch_size=global_batch + 1), world)
