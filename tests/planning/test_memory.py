"""The pure memory model: worked values and properties."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewardkit.planning.memory import (
    MemoryEstimate,
    activation_bytes,
    fsdp_gather_bytes,
    lora_bytes,
    lora_resident_bytes,
    max_micro_batch,
    transient_bytes,
    weight_bytes,
)

counts = st.integers(min_value=0, max_value=10**12)
procs = st.integers(min_value=1, max_value=1024)


def test_worked_values() -> None:
    # Qwen-Image: 20,430,401,088 bf16 params over 8 GPUs.
    assert weight_bytes(20_430_401_088, 2, processes=8, sharded=True) == 5_107_600_272
    assert weight_bytes(20_430_401_088, 2, processes=8, sharded=False) == 40_860_802_176
    assert fsdp_gather_bytes(339_831_296, 2, sharded=True) == 1_359_325_184
    assert lora_bytes(1_000, processes=1) == 16_000
    assert lora_bytes(1_000, processes=8) == 20_000
    assert lora_bytes(1_000, processes=8, ema=True, kl_reference=True) == 28_000
    assert lora_resident_bytes(1_000) == 12_000
    assert lora_resident_bytes(1_000, ema=True, kl_reference=True) == 20_000
    assert transient_bytes(7) == 14
    assert activation_bytes(4, 10, 3) == 52
    assert max_micro_batch(100, 100, 7) == 0
    assert max_micro_batch(107, 100, 7) == 1


@given(n=counts, b=st.sampled_from([1, 2, 4]), p=procs)
def test_sharding_splits_the_replicated_bytes(n: int, b: int, p: int) -> None:
    sharded = weight_bytes(n, b, processes=p, sharded=True)
    full = weight_bytes(n, b, processes=p, sharded=False)
    assert full == n * b
    assert sharded * p >= full > (sharded - 1) * p or full == sharded == 0


@given(n=counts, p=procs, ema=st.booleans(), kl=st.booleans())
def test_lora_state_is_replicated_and_grows_with_copies(n: int, p: int, ema: bool, kl: bool) -> None:
    base = lora_bytes(n, processes=p)
    assert base == n * (16 + 4 * (p > 1))
    assert lora_bytes(n, processes=p, ema=ema, kl_reference=kl) == base + 4 * n * (ema + kl)


@given(n=counts, p=procs, ema=st.booleans(), kl=st.booleans())
def test_resident_lora_state_is_the_step_state_less_gradients(n: int, p: int, ema: bool, kl: bool) -> None:
    # Between steps the gradients (4n) and, with P > 1, their all-reduce buffer (4n) are freed.
    resident = lora_resident_bytes(n, ema=ema, kl_reference=kl)
    assert resident == lora_bytes(n, processes=p, ema=ema, kl_reference=kl) - 4 * n * (1 + (p > 1))
    assert resident >= 12 * n


@given(budget=counts, fixed=counts, per=st.integers(min_value=1, max_value=10**10))
def test_max_micro_batch_is_the_largest_that_fits(budget: int, fixed: int, per: int) -> None:
    m = max_micro_batch(budget, fixed, per)
    assert m >= 0
    if m > 0:
        assert fixed + m * per <= budget
    assert fixed + (m + 1) * per > budget


@given(w=counts, g=counts, f=counts, s=counts, a=counts, t=counts, m=st.integers(min_value=1, max_value=64))
def test_estimate_total_is_linear_in_micro_batch(
    w: int, g: int, f: int, s: int, a: int, t: int, m: int
) -> None:
    e = MemoryEstimate(w, g, f, s, a, t)
    assert e.total(m) == w + g + f + s + m * (a + t)
    assert e.total(m + 1) - e.total(m) == e.per_sample
    fits = e.max_micro_batch(e.total(m))
    assert fits >= m or e.per_sample == 0


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: weight_bytes(-1, 2), "n_params"),
        (lambda: weight_bytes(1, 0), "dtype_bytes"),
        (lambda: weight_bytes(1, 2, processes=0), "processes"),
        (lambda: lora_bytes(True), "n_lora"),
        (lambda: lora_resident_bytes(-3), "n_lora"),
        (lambda: max_micro_batch(10, 1, 0), "per_sample"),
        (lambda: activation_bytes(-1, 1), "micro_batch"),
    ],
)
def test_bad_arguments_name_themselves(call, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        call()
