import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

from rewardkit.training import ema_decay, ema_init, ema_update


@given(st.integers(0, 1000), st.floats(0.0, 0.999))
def test_decay_warms_up_and_is_capped(epoch: int, cap: float) -> None:
    d = ema_decay(epoch, cap)
    assert d == min((1 + epoch) / (10 + epoch), cap)
    assert ema_decay(epoch + 1, cap) >= d


def test_update_is_the_ema_formula_in_float32() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.bfloat16))
    state = ema_init([("w", w)])
    assert state.shadow["w"].dtype == torch.float32
    with torch.no_grad():
        w.copy_(torch.tensor([3.0, 6.0]))
    state = ema_update(state, [("w", w)], 0.9)
    torch.testing.assert_close(state.shadow["w"], torch.tensor([0.9 * 1 + 0.1 * 3, 0.9 * 2 + 0.1 * 6]))
    assert state.num_updates == 1
    state = ema_update(state, [("w", w)], 0.0)  # decay 0 copies the weights
    torch.testing.assert_close(state.shadow["w"], torch.tensor([3.0, 6.0]))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="max_decay"):
        ema_decay(0, 1.0)
    with pytest.raises(ValueError, match="epoch"):
        ema_decay(-1, 0.9)
    state = ema_init([("a", torch.zeros(1))])
    with pytest.raises(ValueError, match="lacks tracked weight"):
        ema_update(state, [("b", torch.zeros(1))], 0.5)
    with pytest.raises(ValueError, match="decay must be in"):
        ema_update(state, [("a", torch.zeros(1))], 1.5)
