"""Seed 003's moving-average baseline: A = r − b, b ← d·b + (1 − d)·mean(r)."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rewardkit import BaselineState, baseline_advantages


def test_hand_worked_sequence() -> None:
    state = BaselineState()
    adv, state = baseline_advantages(torch.tensor([0.0, 1.0, 2.0]), state, decay=0.8)
    torch.testing.assert_close(adv, torch.tensor([-1.0, 0.0, 1.0]))  # first baseline = batch mean 1
    assert state == BaselineState(1.0, 1)
    adv, state = baseline_advantages(torch.tensor([3.0, 5.0]), state, decay=0.8)
    torch.testing.assert_close(adv, torch.tensor([2.0, 4.0]))  # against the old baseline 1
    assert state.value == pytest.approx(0.8 * 1.0 + 0.2 * 4.0) and state.updates == 2


@given(st.lists(st.floats(-10, 10), min_size=1, max_size=20), st.floats(0.0, 0.99))
def test_zero_decay_tracks_the_last_mean_and_dtype_is_kept(values: list[float], decay: float) -> None:
    r = torch.tensor(values, dtype=torch.float64)
    adv, state = baseline_advantages(r, BaselineState(5.0, 3), decay=decay)
    torch.testing.assert_close(adv, r - 5.0)
    assert adv.dtype == torch.float64
    assert state.value == pytest.approx(decay * 5.0 + (1 - decay) * float(r.mean()))
    _, zero = baseline_advantages(r, BaselineState(5.0, 3), decay=0.0)
    assert zero.value == pytest.approx(float(r.mean()))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="finite"):
        baseline_advantages(torch.tensor([1.0, float("nan")]), BaselineState())
    with pytest.raises(ValueError, match="decay"):
        baseline_advantages(torch.tensor([1.0]), BaselineState(), decay=1.0)
    with pytest.raises(ValueError, match="empty"):
        baseline_advantages(torch.zeros(0), BaselineState())
