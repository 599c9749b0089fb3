import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

import rewardkit
from tests.core import reference

SIM = st.floats(-1.0, 1.0, allow_nan=False)
MODES = st.sampled_from(["increase", "decrease", "flat"])


@given(st.lists(SIM, min_size=1, max_size=20), st.integers(1, 6), MODES, st.floats(0.0, 1.0))
def test_drs_matches_float64_formula(sims, n_refs, k_mode, tau) -> None:
    got = rewardkit.drs_scale(torch.tensor(sims, dtype=torch.float64), n_refs, tau=tau, k_mode=k_mode)
    want = [reference.drs_scale(s, n_refs, tau, k_mode, 10.0, 3.0) for s in sims]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-14)


@given(SIM, SIM, st.integers(1, 6), MODES)
def test_drs_monotone_in_similarity(a, b, n_refs, k_mode) -> None:
    lo, hi = sorted((a, b))
    out = rewardkit.drs_scale(torch.tensor([lo, hi], dtype=torch.float64), n_refs, k_mode=k_mode)
    assert float(out[0]) <= float(out[1])


@given(st.floats(-1.0, 1.0), st.integers(1, 7), MODES)
def test_drs_is_one_half_at_tau(tau, n_refs, k_mode) -> None:
    out = rewardkit.drs_scale(torch.tensor([tau], dtype=torch.float64), n_refs, tau=tau, k_mode=k_mode)
    assert float(out[0]) == 0.5


@given(st.floats(0.0, 1.0), st.integers(1, 6))
def test_drs_steepens_with_n_refs_in_increase_mode(s, n) -> None:
    sims = torch.tensor([s, s], dtype=torch.float64)
    out = rewardkit.drs_scale(sims, torch.tensor([n, n + 1]), k_mode="increase")
    distance = (out - 0.5).abs()
    assert float(distance[1]) >= float(distance[0])


def test_drs_k_values_from_spec() -> None:
    # Spec §6: increase k = 10 + 3(n - 2) -> 10, 13, 16, 19, 22; decrease mirrors it.
    n = torch.tensor([2, 3, 4, 5, 6])
    torch.testing.assert_close(rewardkit.drs_steepness(n), torch.tensor([10.0, 13, 16, 19, 22]))
    torch.testing.assert_close(
        rewardkit.drs_steepness(n, k_mode="decrease"), torch.tensor([22.0, 19, 16, 13, 10])
    )
    assert rewardkit.drs_steepness(None, k_mode="flat") == 10.0


def test_drs_per_target_broadcast_and_gradient() -> None:
    sims = torch.tensor([[0.6, 0.7], [0.5, 0.9]], dtype=torch.float64, requires_grad=True)
    n_refs = torch.tensor([2, 6])
    out = rewardkit.drs_scale(sims, n_refs)
    k = torch.tensor([[10.0], [22.0]], dtype=torch.float64)
    torch.testing.assert_close(out, torch.sigmoid(k * (sims.detach() - 0.65)))
    assert torch.autograd.gradcheck(lambda x: rewardkit.drs_scale(x, n_refs), (sims,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_drs_dtype(dtype) -> None:
    out = rewardkit.drs_scale(torch.tensor([0.3, 0.9], dtype=dtype), 3)
    assert out.dtype == dtype and bool(((out > 0) & (out < 1)).all())


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((torch.tensor([0.5]), 2), {"k_mode": "steep"}, ValueError, "k_mode must be one of"),
        ((torch.tensor([0.5]),), {}, ValueError, "n_refs is required"),
        ((torch.tensor([0.5]), 0), {}, ValueError, "n_refs must be an int >= 1"),
        ((torch.tensor([0.5]), torch.tensor([2.0])), {}, TypeError, "n_refs must hold integers"),
        (
            (torch.tensor([0.5, 0.4]), torch.tensor([2, 3, 4])),
            {},
            ValueError,
            r"n_refs as a tensor must be \(N,\)",
        ),
        ((torch.tensor([0.5]), 20), {"k_mode": "decrease"}, ValueError, "non-positive steepness"),
        ((torch.tensor([math.nan]), 2), {}, ValueError, "similarity contains 1 NaN"),
        ((torch.tensor([1]), 2), {}, TypeError, "floating-point"),
    ],
)
def test_drs_bad_input(args, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        rewardkit.drs_scale(*args, **kwargs)
