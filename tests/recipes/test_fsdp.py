"""FSDP2 through accelerate: sharded runs train like one process and resume on any process count.

Each recipe runs once on one process (two epochs) and once under ``accelerate launch
--config_file examples/configs/accelerate_fsdp.yaml`` on two CPU processes (the frozen base
sharded, one epoch); the two-process checkpoint then resumes for the second epoch on one and on
four processes. Every end state must equal the one-process run up to float32 summation order.
"""

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from rewardkit.recipes.config import ConfigError, GRPOConfig, load_config
from rewardkit.recipes.grpo import check_sharded_plan
from rewardkit.training import latest_checkpoint
from tests.recipes.conftest import REPO, cli_env, free_port, grpo_config, launch, sft_config, write_yaml

FSDP_CONFIG = REPO / "examples" / "configs" / "accelerate_fsdp.yaml"


def accelerate_launch(recipe: str, config: Path, world: int, *args: str) -> subprocess.Popen[str]:
    """``accelerate launch --config_file accelerate_fsdp.yaml --num_processes world -m rewardkit.cli ...``."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG),
        "--num_processes", str(world), "--main_process_port", str(free_port()),
        "-m", "rewardkit.cli", recipe, "--config", str(config), *args,
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=REPO, env=cli_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    return output


def _state(out: Path, name: str | None = None) -> dict[str, torch.Tensor]:
    path = out / "checkpoints" / name if name else latest_checkpoint(out / "checkpoints")
    assert path is not None and path.is_dir(), path
    return load_file(str(path / "tensors.safetensors"))


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    # Whole LoRA weights and AdamW moments in every checkpoint, whatever the process count.
    keys = [k for k in a if k.startswith(("adapter/", "optimizer/"))]
    assert keys and sorted(keys) == sorted(k for k in b if k.startswith(("adapter/", "optimizer/")))
    for key in keys:
        assert a[key].shape == b[key].shape, key
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)


def _configs(recipe: str, tiny: dict[str, Path], data: dict[str, Path], out: Path) -> dict[str, Any]:
    if recipe == "grpo":  # groups of 4 span the processes; one forward per sample everywhere
        return grpo_config(tiny, data, out, rollout={"micro_batch": 1}, train={"per_device_batch_size": 1, "epochs": 1},
                           log={"keep": 4})  # fmt: skip
    # SFT: 4 instances per optimizer step on 1, 2 or 4 processes (accumulation 4, 2, 1).
    return sft_config(tiny, data, out, backbone="flux2-klein", data={"eval": None},
                      train={"epochs": 1, "batch_size": 1, "global_batch_size": 4}, log={"keep": 4, "save_every": 100})  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["sft", "grpo"])
def test_fsdp_matches_one_process_and_resumes_on_other_process_counts(
    recipe: str, tiny: dict[str, Path], data: dict[str, Path], tmp_path: Path
) -> None:
    paths = {name: tmp_path / name for name in ("one", "fsdp2", "resume1", "resume4")}
    yamls = {
        name: write_yaml(_configs(recipe, tiny, data, out), tmp_path / f"{name}.yaml")
        for name, out in paths.items()
    }
    two_epochs = ("--set", "train.epochs=2")
    straight = launch(recipe, yamls["one"], *two_epochs, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sharded = _finish(accelerate_launch(recipe, yamls["fsdp2"], 2))
    _finish(straight)
    assert "sharded over 2 processes" in sharded

    # Epoch 1: two sharded processes end where one process ends.
    first = latest_checkpoint(paths["fsdp2"] / "checkpoints")
    assert first is not None
    _assert_close(_state(paths["fsdp2"]), _state(paths["one"], first.name), atol=5e-5)

    # Epoch 2, resumed from the two-process checkpoint on one and on four processes.
    for name in ("resume1", "resume4"):
        shutil.copytree(paths["fsdp2"] / "checkpoints", paths[name] / "checkpoints")
    resumed = [
        launch(recipe, yamls["resume1"], *two_epochs, "--resume", stdout=subprocess.PIPE, stderr=subprocess.STDOUT),
        accelerate_launch(recipe, yamls["resume4"], 4, *two_epochs, "--resume"),
    ]  # fmt: skip
    outputs = [_finish(p) for p in resumed]
    assert all("resumed from" in o for o in outputs) and "sharded over 4 processes" in outputs[1]
    final = _state(paths["one"])
    initial = _state(paths["one"], first.name)
    for name in ("resume1", "resume4"):
        _assert_close(_state(paths[name]), final, atol=2e-4)
    # The second epoch moved the weights far more than the tolerance.
    moved = max(float((final[k] - initial[k]).abs().max()) for k in final if k.startswith("adapter/"))
    assert moved > 1e-2


def test_sharded_grpo_plan_refuses_unequal_forward_counts(tiny: dict[str, Path], data: dict[str, Path],
                                                        tmp_path: Path) -> None:  # fmt: skip
    def config(**train: int) -> GRPOConfig:
        raw = grpo_config(tiny, data, tmp_path, train=train, rollout={"micro_batch": 2})
        return load_config(GRPOConfig, recipe="grpo", path=write_yaml(raw, tmp_path / "c.yaml"))

    # 3 groups of 4, one step. On 2 processes, 4 + 2 and 2 + 4 samples: with batches of 3 (and
    # rollout micro-batches of 2) both make 2 + 1 = 1 + 2 = 3 calls.
    check_sharded_plan(config(prompts_per_epoch=3, gradient_step_per_epoch=1, per_device_batch_size=3), 2)
    # On 4 processes, 3 | 1 + 2 | 2 + 1 | 3 samples: batches of 1 give 3 calls each.
    check_sharded_plan(config(prompts_per_epoch=3, gradient_step_per_epoch=1, per_device_batch_size=1), 4)
    # Batches of 3 give process 0 one call but process 1 two (1 + 2): FSDP would wait forever.
    with pytest.raises(
        ConfigError, match=r"\[1, 2, 2, 1\] calls; set train.per_device_batch_size to a divisor of 1"
    ):
        check_sharded_plan(config(prompts_per_epoch=3, gradient_step_per_epoch=1, per_device_batch_size=3), 4)


def test_the_shipped_qwen_config_shards_on_8_processes_and_the_error_names_the_fix() -> None:
    config = load_config(GRPOConfig, recipe="grpo", path=REPO / "examples" / "configs" / "grpo_qwen.yaml")
    for world in (1, 2, 4, 8):
        check_sharded_plan(config, world)
    # 16 processes hold 18 samples of groups of 24 per step: parts of 18, 12 + 6 or 6 + 12, so
    # whole-part rollout calls differ (1 vs 2), and any divisor of 6 evens them out.
    with pytest.raises(ConfigError, match=r"rollout plan .* set rollout.micro_batch to a divisor of 6"):
        check_sharded_plan(config, 16)
    fixed = config.model_copy(update={"rollout": config.rollout.model_copy(update={"micro_batch": 6})})
    check_sharded_plan(fixed, 16)
