"""recipes/_metrics.py: reward and tensor summaries, per-epoch stats, the run logger and plots."""

import json
import math
from types import SimpleNamespace

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given

from rewardkit.recipes._metrics import MetricLogger, Stats, plot_history, reward_metrics, tensor_metrics

VALUES = st.floats(-5, 5, allow_nan=False, width=32)


@given(st.integers(1, 12), st.integers(1, 3), st.data())
def test_reward_metrics_match_a_float64_reference(n, k, data) -> None:
    rows = data.draw(
        st.lists(
            st.lists(st.one_of(VALUES, st.just(math.nan)), min_size=k, max_size=k), min_size=n, max_size=n
        )
    )
    weights = data.draw(st.lists(st.floats(0, 2, width=32), min_size=k, max_size=k))
    rewards, w = torch.tensor(rows), torch.tensor(weights)
    got = reward_metrics(rewards, [f"r{j}" for j in range(k)], w)
    ref = np.nan_to_num(np.array(rows, dtype=np.float64)) @ np.array(weights, dtype=np.float64)
    assert got["reward/mean"] == pytest.approx(ref.mean(), abs=1e-4)
    for j in range(k):
        col = np.array([r[j] for r in rows], dtype=np.float64)
        valid = col[~np.isnan(col)]
        mean, std = got[f"reward/r{j}/mean"], got[f"reward/r{j}/std"]
        if len(valid) == 0:
            assert math.isnan(mean) and std == 0.0
        else:
            assert mean == pytest.approx(valid.mean(), abs=1e-4)
            assert std == pytest.approx(valid.std(ddof=1) if len(valid) > 1 else 0.0, abs=1e-4)


@given(st.lists(VALUES, min_size=1, max_size=20))
def test_tensor_metrics_order_and_single_value(values) -> None:
    got = tensor_metrics(adv=torch.tensor(values))
    assert set(got) == {"adv/mean", "adv/std", "adv/min", "adv/max"}
    assert got["adv/min"] <= got["adv/mean"] + 1e-5 and got["adv/mean"] <= got["adv/max"] + 1e-5
    assert got["adv/std"] >= 0 and (len(values) > 1 or got["adv/std"] == 0.0)


class _LocalAccelerator:
    """accelerate's reduce on one process: the tensor itself."""

    def reduce(self, tensor, reduction):
        assert reduction == "mean"
        return tensor


def test_stats_average_each_name_over_the_epoch() -> None:
    dist = SimpleNamespace(accelerator=_LocalAccelerator(), device=torch.device("cpu"))
    stats = Stats()
    assert stats.means(dist) == {}
    stats.add(loss=torch.tensor(1.0), clip=0.0)
    stats.add(loss=3.0)
    assert stats.means(dist) == {"loss": 2.0, "clip": 0.0}


def test_metric_logger_writes_config_and_one_json_record_per_call(tmp_path, capsys) -> None:
    log = MetricLogger(
        tmp_path, enabled=True, tensorboard=False, wandb=False, project="p", config={"a": 1}, name="grpo"
    )
    log.log(3, {"loss": 0.5, "step": 3.0}, header="epoch 1/2")
    log.close()
    assert "[grpo] epoch 1/2 | loss=0.5 step=3" in capsys.readouterr().out
    (record,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert record["step"] == 3 and record["loss"] == 0.5
    assert (tmp_path / "config.yaml").read_text().strip() == "a: 1"
    quiet = MetricLogger(
        tmp_path / "other", enabled=False, tensorboard=False, wandb=False, project="p", config={}, name="x"
    )
    quiet.log(0, {"loss": 1.0}, header="h")
    assert not (tmp_path / "other").exists()


def test_plot_history_skips_nan_points_and_writes_a_png(tmp_path) -> None:
    pytest.importorskip("matplotlib")  # part of the plots extra
    history = [{"epoch": 1, "r": 0.1}, {"epoch": 2, "r": math.nan}, {"epoch": 3, "r": 0.3}]
    path = plot_history(history, ["r", "missing"], tmp_path / "curve.png", x="epoch", title="t")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_requested_logger_that_is_missing_is_reported(tmp_path, capsys, monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    MetricLogger(tmp_path, enabled=True, tensorboard=True, wandb=False, project="p", config={}, name="grpo")
    assert "tensorboard is not installed" in capsys.readouterr().err
