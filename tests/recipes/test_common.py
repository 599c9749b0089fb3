"""recipes/_common.py: seeds, data order and the per-step sample plan."""

import hypothesis.strategies as st
import pytest
from hypothesis import given

from rewardkit.recipes import _common as rc
from rewardkit.recipes.config import ConfigError


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
