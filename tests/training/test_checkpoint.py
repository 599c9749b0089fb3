import json
import random
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

from rewardkit.training import (
    CheckpointError,
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.builds(
        lambda n, s: torch.randn(n, generator=torch.Generator().manual_seed(s)),
        st.integers(0, 4),
        st.integers(0, 99),
    ),
)
states = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.text("abc", min_size=1, max_size=3), inner, max_size=3),
        st.dictionaries(st.integers(0, 5), inner, min_size=1, max_size=3),
    ),
    max_leaves=8,
)


def assert_same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b and type(a) is type(b)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=30)
@given(states)
def test_any_state_round_trips(tmp_path: Path, state) -> None:
    save_checkpoint(tmp_path, 1, {"s": state}, keep=None)
    assert_same(load_checkpoint(tmp_path)["s"], state)


def test_model_optimizer_and_dtypes_round_trip(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "bf16": torch.ones(3, dtype=torch.bfloat16),
    }
    save_checkpoint(tmp_path, 7, state, fingerprint="cfg")
    loaded = load_checkpoint(tmp_path, fingerprint="cfg")
    assert_same(loaded["model"], state["model"])
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(loaded["optimizer"])
    assert_same(opt2.state_dict(), opt.state_dict())
    assert loaded["bf16"].dtype == torch.bfloat16


def test_corrupt_and_mismatched_checkpoints_fail_loudly(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 1, {"w": torch.arange(10.0)}, fingerprint="a")
    with pytest.raises(CheckpointError, match="different configuration"):
        load_checkpoint(tmp_path, fingerprint="b")
    data = bytearray((path / "tensors.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "tensors.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the hash"):
        load_checkpoint(path)
    (path / "manifest.json").write_text("{oops")
    with pytest.raises(CheckpointError, match=r"manifest\.json is corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not a rewardkit checkpoint"):
        load_checkpoint(tmp_path / "nowhere")
    save_checkpoint(tmp_path / "v", 1, {})
    m = json.loads((tmp_path / "v" / "step_1" / "manifest.json").read_text())
    m["format_version"] = 99
    (tmp_path / "v" / "step_1" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="format 99"):
        load_checkpoint(tmp_path / "v")


def test_interrupted_save_leaves_previous_checkpoint_usable(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, {"w": torch.zeros(2)})
    # A save killed half way leaves only a temporary folder behind.
    (tmp_path / ".step_2.tmp").mkdir()
    (tmp_path / ".step_2.tmp" / "tensors.safetensors").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path) == tmp_path / "step_1"
    assert torch.equal(load_checkpoint(tmp_path)["w"], torch.zeros(2))
    save_checkpoint(tmp_path, 2, {"w": torch.ones(2)})  # the next save cleans it up
    assert not (tmp_path / ".step_2.tmp").exists()
    assert torch.equal(load_checkpoint(tmp_path)["w"], torch.ones(2))


def test_keeps_the_newest(tmp_path: Path) -> None:
    for step in (1, 2, 3, 10):
        save_checkpoint(tmp_path, step, {"s": step}, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_10", "step_3"]
    assert latest_checkpoint(tmp_path) == tmp_path / "step_10"
    assert latest_checkpoint(tmp_path / "empty") is None


def test_unsupported_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="'x/y' holds a set"):
        save_checkpoint(tmp_path, 1, {"x": {"y": {1, 2}}})


def test_rng_state_restores_every_generator(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, {"rng": capture_rng_state()})
    first = (torch.rand(3), np.random.rand(2), random.random())
    restore_rng_state(load_checkpoint(tmp_path)["rng"])
    second = (torch.rand(3), np.random.rand(2), random.random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]
