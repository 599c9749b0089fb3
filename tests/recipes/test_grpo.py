"""Stage II end to end on the tiny Qwen-Image-Edit checkpoint (in-process runs)."""

import json
from pathlib import Path

import pytest
import torch

from rewardkit.core.baseline import BaselineState
from rewardkit.recipes.config import GRPOConfig, load_config
from rewardkit.recipes.grpo import advantages_and_weights, train
from rewardkit.training import export_lora
from tests.recipes.conftest import grpo_config, write_yaml


def _config(tmp_path: Path, raw: dict) -> GRPOConfig:
    return load_config(GRPOConfig, recipe="grpo", path=write_yaml(raw, tmp_path / "grpo.yaml"))


@pytest.mark.slow
def test_grpo_raises_the_mean_reward(tiny: dict[str, Path], data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    raw = grpo_config(tiny, data, out, train={"epochs": 5}, log={"plot": True})
    result = train(_config(tmp_path, raw))

    rewards = [h["reward/redness/mean"] for h in result.history]
    spread = result.history[0]["reward/redness/std"]  # within-batch std before any update
    assert len(rewards) == 5
    # Fixed seeds (measured on CPU): -0.0626, -0.0615, -0.0594, -0.0441, -0.0345.
    assert rewards[-1] - rewards[0] > 5 * spread, rewards
    assert sum(rewards[-2:]) / 2 > sum(rewards[:2]) / 2
    assert all(h["ratio_min"] > 0.5 and h["grad_norm"] > 0 for h in result.history)
    # Outputs: metrics per epoch, the reward curve, checkpoints and the EMA exports.
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert (out / "reward_curve.png").stat().st_size > 1000
    assert (out / "checkpoints" / "latest").is_file()
    assert result.export is not None and result.export.diffusers_file.is_file()
    assert (result.export.peft_dir / "adapter_config.json").is_file()


@pytest.mark.slow
def test_seed003_baseline_variant_from_a_peft_adapter_with_kl(
    tiny: dict[str, Path], data: dict[str, Path], tmp_path: Path
) -> None:
    """Stage II starting from a peft-format adapter, with seed 003's baseline and a KL to the start."""
    import rewardkit

    bb = rewardkit.load_backbone("qwen-image-edit-2511", tiny["qwen-image-edit-2511"], device="cpu")
    bb.add_adapter(rank=2)
    with torch.no_grad():
        for p in bb.adapter_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    start = export_lora(bb, tmp_path / "start").peft_dir
    raw = grpo_config(
        tiny, data, tmp_path / "run", model={"adapter": str(start)}, advantage={"estimator": "baseline"},
        kl={"beta": 0.04, "type": "v", "reference": "rl_start"}, train={"epochs": 2, "group_size": 2},
        data={"eval": str(data["test"]), "eval_limit": 3}, eval={"every": 2, "num_steps": 2, "guidance_scale": 1.0},
    )  # fmt: skip
    result = train(_config(tmp_path, raw))
    first, second = result.history
    assert first["kl"] >= 0 and second["kl"] > 0  # zero at the start policy, then the policy moves
    assert abs(first["adv/mean"]) < 1e-6  # first baseline = the batch mean
    assert abs(second["adv/mean"]) > 0  # later: reward minus a lagging baseline
    assert "eval/redness" not in first and -1 < second["eval/redness"] < 1  # EMA policy, every 2 epochs
    assert (
        result.adapter_dir is not None and (result.adapter_dir / "pytorch_lora_weights.safetensors").is_file()
    )


def test_advantages_and_weights_estimators(tmp_path: Path) -> None:
    raw = {"model": {"path": "x"}, "data": {"train": "m.json"}, "rewards": [{"reward": "r", "name": "sim"}],
           "dar": {"reward": "sim", "w_min": 0.0}}  # fmt: skip
    config = _config(tmp_path, raw)
    rewards = torch.tensor([[0.1], [0.3], [0.6], [0.8]])
    groups, weights = torch.tensor([0, 0, 1, 1]), torch.tensor([1.0])
    difficulty = rewards[:, 0]
    adv, w, state = advantages_and_weights(config, rewards, weights, groups, difficulty, BaselineState())
    torch.testing.assert_close(adv, rewardkit_gdpo(rewards, groups))
    assert w[0] == w[1] > w[2] == w[3]  # the harder group (lower similarity) weighs more
    assert state == BaselineState()  # untouched by gdpo
    config.advantage.estimator = "baseline"
    adv, _, state = advantages_and_weights(config, rewards, weights, groups, difficulty, BaselineState())
    torch.testing.assert_close(adv, rewards[:, 0] - rewards.mean())
    assert state.updates == 1
    config.advantage.estimator = "grpo"
    with pytest.raises(ValueError, match="gdpo"):
        advantages_and_weights(config, torch.tensor([[float("nan")], [1.0]]), weights, torch.tensor([0, 0]),
                               torch.zeros(2), BaselineState())  # fmt: skip


def rewardkit_gdpo(rewards: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    import rewardkit

    return rewardkit.gdpo_advantages(rewards, groups, [1.0])
