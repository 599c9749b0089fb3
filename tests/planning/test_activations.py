"""Activations measured on meta agree with the same forward on CPU; flash saves O(L), math O(L²)."""

import pytest
import torch

from rewardkit.planning.activations import attach_lora, profile_activations
from rewardkit.planning.model import PlanShape
from rewardkit.planning.planner import build_plan_model

pytest.importorskip("diffusers")
BACKBONES = ("qwen-image-edit-2511", "flux2-klein")


@pytest.mark.parametrize("name", BACKBONES)
def test_meta_flash_profile_matches_cpu_forward(name: str) -> None:
    shape = PlanShape(1, 128, 128, 2, 128, 32)
    profiles = {}
    for device in ("meta", "cpu"):
        model = build_plan_model(name, "tiny", device=device)
        n = attach_lora(
            model.transformer, rank=4, target_modules=model.lora_target_modules, dtype=torch.float32
        )
        assert n > 0
        assert all(("lora_" in k) == p.requires_grad for k, p in model.transformer.named_parameters())
        profiles[device] = profile_activations(model, shape, dtype=torch.float32, flash=device == "meta")
    meta, cpu = profiles["meta"], profiles["cpu"]
    # CPU SDPA without a mask runs a flash kernel: the same saved set up to the log-sum-exp.
    assert abs(meta.saved - cpu.saved) <= 0.05 * cpu.saved
    assert meta.saved == meta.outside_blocks + sum(meta.per_block)
    assert len(meta.per_block) == 2
    assert 0 < meta.checkpointed < meta.saved
    assert meta.largest_tensor > 0


def test_math_attention_saves_the_quadratic_matrix() -> None:
    model = build_plan_model("flux2-klein", "tiny")
    attach_lora(model.transformer, rank=2, target_modules=model.lora_target_modules, dtype=torch.float32)
    small, large = PlanShape(1, 64, 64, 1, 64, 8), PlanShape(1, 128, 128, 1, 128, 8)
    flash = [profile_activations(model, s, dtype=torch.float32).saved for s in (small, large)]
    math = [profile_activations(model, s, dtype=torch.float32, flash=False).saved for s in (small, large)]
    # 4x the tokens: flash grows about 4x, math (L x L probabilities) clearly faster.
    assert 3.0 < flash[1] / flash[0] < 4.5
    assert math[1] / math[0] > flash[1] / flash[0] + 1.0
    assert math[1] > flash[1]


def test_flash_stand_in_is_refused_off_meta() -> None:
    model = build_plan_model("flux2-klein", "tiny", device="cpu")
    with pytest.raises(ValueError, match="flash"):
        profile_activations(model, PlanShape(1, 64, 64, 0, 64, 8), dtype=torch.float32)
