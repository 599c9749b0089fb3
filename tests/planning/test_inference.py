"""The sampling forward's peak on meta against the measured peak of the same forward on CPU."""

import pytest
import torch
from torch.utils._pytree import tree_leaves

from rewardkit.planning.activations import attach_lora, profile_activations
from rewardkit.planning.inference import sampling_peak_bytes
from rewardkit.planning.measure import peak_bytes
from rewardkit.planning.model import PlanShape
from rewardkit.planning.planner import build_plan_model

pytest.importorskip("diffusers")


def _with_lora(name: str, device: str):
    model = build_plan_model(name, "tiny", device=device)
    attach_lora(model.transformer, rank=4, target_modules=model.lora_target_modules, dtype=torch.float32)
    return model


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name", ["qwen-image-edit-2511", "flux2-klein"])
def test_meta_sampling_peak_within_20_percent_of_cpu(name: str, batch: int) -> None:
    shape = PlanShape(batch, 128, 128, 2, 128, 32)
    planned = sampling_peak_bytes(_with_lora(name, "meta"), shape, dtype=torch.float32)

    torch.manual_seed(0)
    model = _with_lora(name, "cpu")
    inputs = model.forward_kwargs(shape, torch.device("cpu"), torch.float32)
    input_bytes = sum(
        t.untyped_storage().nbytes() for t in tree_leaves(dict(inputs)) if isinstance(t, torch.Tensor)
    )

    def sample() -> None:
        with torch.no_grad():
            model.transformer(**inputs)

    measured = input_bytes + peak_bytes(sample)
    assert abs(planned - measured) <= 0.2 * measured, (planned, measured)


def test_sampling_keeps_far_less_than_training_and_scales_with_batch() -> None:
    model = _with_lora("qwen-image-edit-2511", "meta")
    one, four = (PlanShape(b, 128, 128, 2, 128, 32) for b in (1, 4))
    peak_one = sampling_peak_bytes(model, one, dtype=torch.float32)
    peak_four = sampling_peak_bytes(model, four, dtype=torch.float32)
    saved = profile_activations(model, one, dtype=torch.float32).saved
    assert 0 < peak_one < saved / 2  # nothing is saved for backward: a few live tensors only
    assert 3.5 < peak_four / peak_one < 4.5


def test_refused_off_meta() -> None:
    model = build_plan_model("flux2-klein", "tiny", device="cpu")
    with pytest.raises(ValueError, match="meta"):
        sampling_peak_bytes(model, PlanShape(1, 64, 64, 0, 64, 8), dtype=torch.float32)
