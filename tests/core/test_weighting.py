import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import assume, given

import rewardkit
from tests.core import reference

SIMILARITY = st.floats(-0.5, 1.5, allow_nan=False)


@st.composite
def grouped_similarity(draw: st.DrawFn, equal_sizes: bool = False) -> tuple[list[float], list[int]]:
    num_groups = draw(st.integers(1, 6))
    if equal_sizes:
        size = draw(st.integers(2, 6))
        sizes = [size] * num_groups
    else:
        sizes = draw(st.lists(st.integers(2, 6), min_size=num_groups, max_size=num_groups))
    group_ids = [g for g, n in enumerate(sizes) for _ in range(n)]
    order = draw(st.permutations(range(len(group_ids))))
    group_ids = [group_ids[i] * 7 - 3 for i in order]  # non-contiguous labels
    sims = draw(st.lists(SIMILARITY, min_size=len(group_ids), max_size=len(group_ids)))
    return sims, group_ids


GAMMA = st.floats(0.0, 6.0)


@given(grouped_similarity(), GAMMA, st.floats(0.0, 1.0), st.floats(1.0, 8.0), st.booleans())
def test_dar_matches_float64_loop(data, gamma, w_min, w_max, reclip) -> None:
    sims, group_ids = data
    got = rewardkit.dar_weights(
        torch.tensor(sims, dtype=torch.float64),
        torch.tensor(group_ids),
        gamma=gamma,
        w_min=w_min,
        w_max=w_max,
        reclip=reclip,
    )
    want = reference.dar_weights(sims, group_ids, gamma, w_min, w_max, 1e-6, reclip)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-10, atol=1e-12)


@given(grouped_similarity(), GAMMA)
def test_dar_bounds_and_equal_within_group(data, gamma) -> None:
    sims, group_ids = data
    g = torch.tensor(group_ids)
    w = rewardkit.dar_weights(torch.tensor(sims, dtype=torch.float64), g, gamma=gamma)
    assert bool((w >= 0.5).all()) and bool((w <= 5.0).all())
    for label in set(group_ids):
        members = w[g == label]
        assert bool((members == members[0]).all())


@given(grouped_similarity(), GAMMA)
def test_dar_never_increases_with_group_mean_similarity(data, gamma) -> None:
    sims, group_ids = data
    s = torch.tensor(sims, dtype=torch.float64)
    g = torch.tensor(group_ids)
    w = rewardkit.dar_weights(s, g, gamma=gamma)
    labels = sorted(set(group_ids))
    p = [float(s[g == lab].clamp(0, 1).mean()) for lab in labels]
    wg = [float(w[g == lab][0]) for lab in labels]
    for i in range(len(labels)):
        for j in range(len(labels)):
            if p[i] < p[j]:
                assert wg[i] >= wg[j] - 1e-12


@given(grouped_similarity(equal_sizes=True), st.floats(0.1, 4.0))
def test_dar_averages_to_one_when_no_clip_binds(data, gamma) -> None:
    sims, group_ids = data
    groups = reference.groups_of(group_ids)
    raw = [
        (max(0.0, 1 - reference.mean([min(max(sims[i], 0), 1) for i in idx])) + 1e-6) ** gamma
        for idx in groups.values()
    ]
    assume(reference.mean(raw) > 1e-6)  # otherwise the normaliser's eps floor binds
    w = rewardkit.dar_weights(
        torch.tensor(sims, dtype=torch.float64),
        torch.tensor(group_ids),
        gamma=gamma,
        w_min=0.0,
        w_max=math.inf,
        reclip=True,
    )
    assert float(w.mean()) == pytest.approx(1.0, rel=1e-9)


def test_dar_reference_order_goes_to_floor_then_one() -> None:
    # Spec §5: with p_g >= 1 - 0.5**(1/gamma) every raw weight clips to w_min, so all become 1.
    s = torch.tensor([0.4, 0.5, 0.6, 0.7])
    w = rewardkit.dar_weights(s, torch.tensor([0, 0, 1, 1]))
    assert torch.equal(w, torch.ones(4))


def test_dar_hand_worked_values() -> None:
    s = torch.tensor([0.0, 0.2, 0.9, 0.9], dtype=torch.float64)  # p = 0.1 and 0.9
    raw = torch.tensor([(0.9 + 1e-6) ** 2, (0.1 + 1e-6) ** 2], dtype=torch.float64)
    raw = raw.clamp(0.0, 5.0)
    expected = raw / raw.mean()
    w = rewardkit.dar_weights(s, torch.tensor([1, 1, 2, 2]), w_min=0.0)
    torch.testing.assert_close(w, expected.repeat_interleave(2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_dar_dtype_and_no_gradient(dtype) -> None:
    s = torch.tensor([0.1, 0.2, 0.8, 0.9], dtype=dtype, requires_grad=True)
    w = rewardkit.dar_weights(s, torch.tensor([0, 0, 1, 1]), w_min=0.0)
    assert w.dtype == dtype and w.shape == (4,)
    assert not w.requires_grad  # weights are constants of the loss


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"w_min": 2.0, "w_max": 1.0}, "w_min must be <= w_max"),
        ({"gamma": -1.0}, "gamma must be a finite number >= 0"),
        ({"eps": 0.0}, "eps must be > 0"),
        ({"w_min": -0.1}, "w_min must be a finite number >= 0"),
    ],
)
def test_dar_bad_hyperparameters(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        rewardkit.dar_weights(torch.tensor([0.1, 0.2]), torch.tensor([0, 0]), **kwargs)


def test_dar_bad_tensors() -> None:
    with pytest.raises(ValueError, match="similarity contains 1 NaN"):
        rewardkit.dar_weights(torch.tensor([0.1, math.nan]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="group_ids has 3 entries"):
        rewardkit.dar_weights(torch.tensor([0.1, 0.2]), torch.tensor([0, 0, 0]))
    with pytest.raises(TypeError, match="integer tensor"):
        rewardkit.dar_weights(torch.tensor([0.1, 0.2]), torch.tensor([0.0, 0.0]))


def test_dar_refuses_groups_of_one_unless_asked() -> None:
    sim, groups = torch.tensor([0.1, 0.2, 0.7]), torch.tensor([0, 0, 1])
    with pytest.raises(ValueError, match=r"single sample.*gather whole groups"):
        rewardkit.dar_weights(sim, groups)
    weights = rewardkit.dar_weights(sim, groups, allow_singleton_groups=True, w_min=0.0)
    assert weights[0] == weights[1] and weights[2] < weights[0]  # the easier singleton weighs less
