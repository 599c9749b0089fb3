import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import assume, given

import rewardkit
from tests.core import reference

FLOATS = st.floats(-100.0, 100.0, allow_nan=False, width=32)


@st.composite
def grouped_rewards(draw: st.DrawFn, k: int | None = None, nan: bool = False) -> tuple:
    """Rewards `(N,)` or `(N, K)` with arbitrary (shuffled, non-contiguous) group labels."""
    sizes = draw(st.lists(st.integers(2, 7), min_size=1, max_size=5))
    labels = draw(st.lists(st.integers(-50, 50), min_size=len(sizes), max_size=len(sizes), unique=True))
    group_ids = [g for g, n in zip(labels, sizes, strict=True) for _ in range(n)]
    order = draw(st.permutations(range(len(group_ids))))
    group_ids = [group_ids[i] for i in order]
    n = len(group_ids)
    if k is None:
        rewards = draw(st.lists(FLOATS, min_size=n, max_size=n))
    else:
        cell = st.one_of(FLOATS, st.just(math.nan)) if nan else FLOATS
        rewards = draw(st.lists(st.lists(cell, min_size=k, max_size=k), min_size=n, max_size=n))
    return rewards, group_ids


def _tensors(rewards: list, group_ids: list[int], dtype: torch.dtype = torch.float64) -> tuple:
    return torch.tensor(rewards, dtype=dtype), torch.tensor(group_ids)


# ---------------------------------------------------------------- group_advantages


@given(grouped_rewards(), st.sampled_from([0, 1]), st.booleans())
def test_group_advantages_matches_float64_loop(data: tuple, ddof: int, global_std: bool) -> None:
    rewards, group_ids = data
    r, g = _tensors(rewards, group_ids)
    got = rewardkit.group_advantages(r, g, ddof=ddof, global_std=global_std)
    want = reference.group_advantages(rewards, group_ids, 1e-6, ddof, global_std)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-9, atol=1e-7)


@given(grouped_rewards(), st.sampled_from([0, 1]))
def test_group_advantages_zero_mean_unit_std_per_group(data: tuple, ddof: int) -> None:
    rewards, group_ids = data
    r, g = _tensors(rewards, group_ids)
    adv = rewardkit.group_advantages(r, g, ddof=ddof)
    for label in set(group_ids):
        members = g == label
        if r[members].std(correction=ddof) < 1e-3:  # floor or constant group: covered elsewhere
            continue
        assert abs(float(adv[members].mean())) < 1e-9
        assert float(adv[members].std(correction=ddof)) == pytest.approx(1.0, abs=1e-9)


@given(grouped_rewards(), st.floats(0.01, 100.0), st.floats(-50.0, 50.0))
def test_group_advantages_invariant_to_positive_affine_map_of_a_group(
    data: tuple, scale: float, shift: float
) -> None:
    rewards, group_ids = data
    r, g = _tensors(rewards, group_ids)
    target = group_ids[0]
    members = g == target
    assume(float(r[members].std()) > 1e-2)
    mapped = torch.where(members, r * scale + shift, r)
    torch.testing.assert_close(
        rewardkit.group_advantages(mapped, g), rewardkit.group_advantages(r, g), rtol=1e-6, atol=1e-6
    )


@given(grouped_rewards(), st.randoms(use_true_random=False))
def test_group_advantages_permutation_equivariant(data: tuple, rng) -> None:
    rewards, group_ids = data
    r, g = _tensors(rewards, group_ids)
    perm = torch.tensor(rng.sample(range(len(rewards)), len(rewards)))
    torch.testing.assert_close(
        rewardkit.group_advantages(r[perm], g[perm]), rewardkit.group_advantages(r, g)[perm]
    )


@given(st.floats(-1e6, 1e6, allow_nan=False), st.integers(2, 9), st.sampled_from([0, 1]))
def test_constant_group_gets_exactly_zero(value: float, size: int, ddof: int) -> None:
    r = torch.cat([torch.full((size,), value), torch.tensor([0.0, 1.0])])
    g = torch.tensor([3] * size + [7, 7])
    adv = rewardkit.group_advantages(r, g, ddof=ddof, std_floor=0.0)
    assert torch.equal(adv[:size], torch.zeros(size))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_group_advantages_dtype_and_gradient(dtype: torch.dtype) -> None:
    r = torch.tensor([0.1, 0.5, 0.9, 0.2, 0.2, 0.7], dtype=dtype, requires_grad=True)
    g = torch.tensor([0, 0, 0, 1, 1, 1])
    adv = rewardkit.group_advantages(r, g)
    assert adv.dtype == dtype
    assert adv.shape == (6,)
    (adv * torch.arange(6.0, dtype=dtype)).sum().backward()
    assert r.grad is not None
    # A z-score is shift invariant, so each group's gradient sums to zero.
    grad = r.grad.double()
    assert abs(float(grad[:3].sum())) < 1e-2 and abs(float(grad[3:].sum())) < 1e-2
    assert float(grad.abs().sum()) > 0


def test_group_advantages_float64_gradcheck() -> None:
    r = torch.tensor([0.1, 0.5, 0.9, 0.2, 0.3, 0.7], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([0, 0, 0, 1, 1, 1])
    assert torch.autograd.gradcheck(lambda x: rewardkit.group_advantages(x, g), (r,))
    assert torch.autograd.gradcheck(lambda x: rewardkit.group_advantages(x, g, global_std=True), (r,))


def test_global_std_uses_batch_std() -> None:
    r = torch.tensor([0.0, 2.0, 10.0, 14.0], dtype=torch.float64)
    g = torch.tensor([0, 0, 1, 1])
    adv = rewardkit.group_advantages(r, g, global_std=True)
    batch_std = r.std(correction=0)
    torch.testing.assert_close(adv, torch.tensor([-1.0, 1.0, -2.0, 2.0], dtype=torch.float64) / batch_std)


@pytest.mark.parametrize(
    ("rewards", "group_ids", "kwargs", "error", "match"),
    [
        (torch.tensor([1.0, 2.0]), torch.tensor([0, 0, 1]), {}, ValueError, "group_ids has 3 entries"),
        (torch.ones(2, 2), torch.tensor([0, 0]), {}, ValueError, "rewards must have 1 dimension"),
        (torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]), {}, TypeError, "integer tensor"),
        (torch.tensor([1, 2]), torch.tensor([0, 0]), {}, TypeError, "floating-point"),
        (torch.tensor([1.0, math.nan]), torch.tensor([0, 0]), {}, ValueError, "rewards contains 1 NaN"),
        (torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 0, 1]), {}, ValueError, "at least 2 samples"),
        (torch.zeros(0), torch.zeros(0, dtype=torch.long), {}, ValueError, "rewards is empty"),
        (torch.tensor([1.0, 2.0]), torch.tensor([0, 0]), {"std_floor": -1.0}, ValueError, "std_floor"),
        (torch.tensor([1.0, 2.0]), torch.tensor([0, 0]), {"ddof": 2}, ValueError, "ddof"),
        ([1.0, 2.0], torch.tensor([0, 0]), {}, TypeError, "rewards must be a torch.Tensor"),
    ],
)
def test_group_advantages_bad_input(rewards, group_ids, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        rewardkit.group_advantages(rewards, group_ids, **kwargs)


# ---------------------------------------------------------------- gdpo_advantages


@given(
    grouped_rewards(k=3, nan=True),
    st.sampled_from([0, 1]),
    st.lists(st.floats(0.1, 3.0), min_size=3, max_size=3),
)
def test_gdpo_matches_float64_loop(data: tuple, ddof: int, weights: list[float]) -> None:
    rewards, group_ids = data
    r, g = _tensors(rewards, group_ids)
    got = rewardkit.gdpo_advantages(r, g, weights, ddof=ddof)
    want = reference.gdpo_advantages(rewards, group_ids, weights, 1e-6, ddof)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-9, atol=1e-7)


@given(grouped_rewards(k=2), st.integers(0, 1), st.floats(0.01, 100.0))
def test_gdpo_invariant_to_positive_rescaling_of_one_reward(data: tuple, column: int, scale: float) -> None:
    rewards, group_ids = data
    r, g = _tensors(rewards, group_ids)
    for label in set(group_ids):  # the std floor breaks scale invariance for near-constant groups
        spread = r[g == label].std(dim=0, correction=0)
        assume(bool(((spread == 0) | (spread > 1e-3)).all()))
    scaled = r.clone()
    scaled[:, column] *= scale
    torch.testing.assert_close(
        rewardkit.gdpo_advantages(scaled, g), rewardkit.gdpo_advantages(r, g), rtol=1e-6, atol=1e-6
    )


@given(grouped_rewards(k=1), st.sampled_from([0, 1]))
def test_gdpo_with_one_reward_is_batch_whitened_group_advantage(data: tuple, ddof: int) -> None:
    rewards, group_ids = data
    r, g = _tensors(rewards, group_ids)
    group_adv = rewardkit.group_advantages(r[:, 0], g, ddof=ddof)
    if bool((group_adv == 0).all()):
        expected = group_adv
    else:
        expected = (group_adv - group_adv.mean()) / group_adv.std(correction=ddof).clamp_min(1e-6)
    torch.testing.assert_close(rewardkit.gdpo_advantages(r, g, ddof=ddof), expected)
    torch.testing.assert_close(rewardkit.gdpo_advantages(r[:, 0], g, ddof=ddof), expected)


@given(grouped_rewards(k=2))
def test_gdpo_only_weight_ratios_matter(data: tuple) -> None:
    rewards, group_ids = data
    r, g = _tensors(rewards, group_ids)
    # A spread below the std floor (1e-6) is divided by the floor, not by itself, so scaling
    # the weights then scales the result: the property holds for spreads that are 0 or real.
    for label in set(group_ids):
        spread = r[g == label].amax(0) - r[g == label].amin(0)
        assume(bool(((spread == 0) | (spread > 1e-3)).all()))
    torch.testing.assert_close(
        rewardkit.gdpo_advantages(r, g, [1.0, 0.8]), rewardkit.gdpo_advantages(r, g, [2.5, 2.0])
    )


def test_gdpo_undefined_reward_contributes_zero_in_its_group() -> None:
    nan = math.nan
    # Reward 1 (style) is undefined for the second group: only reward 0 decides there.
    r = torch.tensor([[0.0, 1.0], [1.0, 3.0], [0.0, nan], [1.0, nan]], dtype=torch.float64)
    g = torch.tensor([0, 0, 1, 1])
    adv = rewardkit.gdpo_advantages(r, g)
    summed = torch.tensor([-2.0, 2.0, -1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(adv, (summed - summed.mean()) / summed.std(correction=0))
    # Filling the NaNs with any constant gives the same result: no spurious variance.
    filled = torch.nan_to_num(r, nan=0.37)
    torch.testing.assert_close(rewardkit.gdpo_advantages(filled, g), adv)


def test_gdpo_float64_gradcheck_and_bf16() -> None:
    r = torch.tensor(
        [[0.1, 2.0], [0.5, 1.0], [0.9, 3.0], [0.3, 0.0]], dtype=torch.float64, requires_grad=True
    )
    g = torch.tensor([0, 0, 1, 1])
    assert torch.autograd.gradcheck(lambda x: rewardkit.gdpo_advantages(x, g, [1.0, 0.8]), (r,))
    adv = rewardkit.gdpo_advantages(r.detach().bfloat16(), g)
    assert adv.dtype == torch.bfloat16
    torch.testing.assert_close(adv.double(), rewardkit.gdpo_advantages(r.detach(), g), atol=0.05, rtol=0.05)


def test_gdpo_all_constant_is_zero() -> None:
    r = torch.ones(6, 2)
    assert torch.equal(rewardkit.gdpo_advantages(r, torch.tensor([0, 0, 1, 1, 2, 2])), torch.zeros(6))


@pytest.mark.parametrize(
    ("rewards", "weights", "match"),
    [
        (torch.ones(4, 2, 1), None, r"rewards must be \(N, K\)"),
        (torch.ones(4, 2), [1.0], "weights must have one entry per reward column"),
        (torch.ones(4, 2), [1.0, math.inf], "weights contains 1 NaN or infinite"),
        (torch.tensor([[1.0, math.inf]] * 4), None, "rewards contains 4 infinite"),
        (torch.ones(4, 0), None, "rewards is empty"),
    ],
)
def test_gdpo_bad_input(rewards, weights, match) -> None:
    with pytest.raises(ValueError, match=match):
        rewardkit.gdpo_advantages(rewards, torch.tensor([0, 0, 1, 1]), weights)


# --------------------------------------------------------------------------- porting knobs


@given(st.integers(0, 10_000), st.booleans())
def test_additive_floor_is_flow_grpos_formula(seed: int, global_std: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    rewards = torch.rand(12, generator=g, dtype=torch.float64)
    groups = torch.arange(4).repeat_interleave(3)
    got = rewardkit.group_advantages(
        rewards, groups, std_floor=1e-4, std_floor_mode="add", global_std=global_std
    )
    # Flow-GRPO's stat tracker: (r − mean_group) / (std + 1e-4), std of the group or the batch
    want = torch.empty_like(rewards)
    for k in range(4):
        r = rewards[3 * k : 3 * k + 3].tolist()
        mean = sum(r) / 3
        std = (
            math.sqrt(sum((x - sum(rewards.tolist()) / 12) ** 2 for x in rewards.tolist()) / 12)
            if global_std
            else math.sqrt(sum((x - mean) ** 2 for x in r) / 3)
        )
        want[3 * k : 3 * k + 3] = torch.tensor([(x - mean) / (std + 1e-4) for x in r], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    clamp = rewardkit.group_advantages(rewards, groups, std_floor=1e-4, global_std=global_std)
    assert bool((got.abs() <= clamp.abs() + 1e-15).all())  # adding ε only shrinks the z-scores


def test_floor_mode_and_weights_are_validated() -> None:
    r, g = torch.rand(4, 2), torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="std_floor_mode must be 'clamp'"):
        rewardkit.group_advantages(r[:, 0], g, std_floor_mode="max")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got a dict"):
        rewardkit.gdpo_advantages(r, g, {"sim": 1.0, "style": 0.8})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="all zero"):
        rewardkit.gdpo_advantages(r, g, [0.0, 0.0])
    with pytest.raises(ValueError, match=">= 0"):
        rewardkit.gdpo_advantages(r, g, [1.0, -0.5])
    with pytest.raises(TypeError, match="sequence of 2 numbers"):
        rewardkit.gdpo_advantages(r, g, ["a", "b"])  # type: ignore[list-item]
    assert rewardkit.gdpo_advantages(r, g, [1.0, 0.0]).shape == (4,)  # one zero weight is fine
