"""Checkpoints: a run killed mid-epoch resumes to the same weights; bad checkpoints are refused."""

import signal
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rewardkit.recipes.config import GRPOConfig, load_config
from rewardkit.recipes.grpo import train
from rewardkit.training import CheckpointError, latest_checkpoint
from tests.recipes.conftest import grpo_config, launch, write_yaml

EPOCHS = 4


def _final_state(out: Path) -> dict[str, torch.Tensor]:
    latest = latest_checkpoint(out / "checkpoints")
    assert latest is not None
    return load_file(str(latest / "tensors.safetensors"))


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(
    tiny: dict[str, Path], data: dict[str, Path], tmp_path: Path
) -> None:
    configs = {}
    for name in ("straight", "killed"):
        raw = grpo_config(tiny, data, tmp_path / name, train={"epochs": EPOCHS}, ema={"update_interval": 2})
        configs[name] = write_yaml(raw, tmp_path / f"{name}.yaml")
    straight = launch("grpo", configs["straight"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # Kill the second run with SIGKILL right after its second checkpoint, i.e. inside epoch 3.
    killed = launch("grpo", configs["killed"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert killed.stdout is not None
    seen = []
    for line in killed.stdout:
        if line.startswith("[grpo] checkpoint"):
            seen.append(line)
            if len(seen) == 2:
                killed.send_signal(signal.SIGKILL)
                break
    assert killed.wait(timeout=120) == -signal.SIGKILL and len(seen) == 2
    interrupted = latest_checkpoint(tmp_path / "killed" / "checkpoints")
    assert interrupted is not None and interrupted.name == "step_4"  # 2 epochs × 2 steps

    resumed = launch("grpo", configs["killed"], "--resume", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert "resumed from" in output and "epoch 3/4" in output and "epoch 1/4" not in output
    assert straight.wait(timeout=300) == 0

    a, b = _final_state(tmp_path / "straight"), _final_state(tmp_path / "killed")
    assert a.keys() == b.keys()
    for key in a:
        if key.startswith(("adapter/", "ema/", "optimizer/")):
            assert torch.equal(a[key], b[key]), key
    assert any(k.startswith("ema/shadow/") for k in a)


@pytest.fixture(scope="module")
def finished_run(
    tiny: dict[str, Path], data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A finished one-epoch run (its config file sits next to its output folder)."""
    root = tmp_path_factory.mktemp("finished")
    write_yaml(grpo_config(tiny, data, root / "run"), root / "config.yaml")
    train(load_config(GRPOConfig, recipe="grpo", path=root / "config.yaml"))
    return root


def _config(root: Path, *overrides: str) -> GRPOConfig:
    return load_config(GRPOConfig, recipe="grpo", path=root / "config.yaml", overrides=overrides)


@pytest.mark.slow
def test_bad_checkpoints_give_clear_errors(finished_run: Path, tmp_path: Path) -> None:
    # A fresh run into a folder with checkpoints is refused (never silently restarted or overwritten).
    with pytest.raises(CheckpointError, match=r"already holds checkpoints.*pass --resume"):
        train(_config(finished_run))
    # A different configuration cannot resume it.
    with pytest.raises(CheckpointError, match="different configuration"):
        train(_config(finished_run, "optim.lr=0.1"), resume="latest")
    # --resume without any checkpoint.
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        train(_config(finished_run, f"log.output_dir={tmp_path / 'empty'}"), resume="latest")
    # A corrupt tensor file: the hash check fails, through the CLI too (exit status 2, message).
    latest = latest_checkpoint(finished_run / "run" / "checkpoints")
    assert latest is not None
    tensors = latest / "tensors.safetensors"
    blob = bytearray(tensors.read_bytes())
    blob[-10] ^= 0xFF
    tensors.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="corrupt"):
        train(_config(finished_run), resume="latest")
    proc = launch(
        "grpo", finished_run / "config.yaml", "--resume", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "rewardkit grpo: error:" in err and "corrupt" in err
