"""The image stages on tiny random-weight models (the real diffusers classes, built in code)."""

import json
from pathlib import Path

import numpy as np
import pytest

from rewardkit.data.pipeline import plan_records, run_shard
from rewardkit.data.pipeline.config import DataConfig, ProviderSpec, build_providers
from rewardkit.data.pipeline.procedural import ProceduralText
from rewardkit.data.pipeline.runner import finalize

pytest.importorskip("diffusers")

from rewardkit.data.pipeline.model_images import ModelImages

PLAN = plan_records(1, categories={"subject_bg_style": [4]}, seed=3, size=32)[0]


@pytest.fixture(scope="module")
def images() -> ModelImages:
    return ModelImages("tiny", "tiny", steps=2, edit_steps=2, device="cpu")


def test_targets_are_sampled_from_the_scene_prompt_with_the_record_seed(images) -> None:
    spec = ProceduralText().scene(PLAN)
    a, b = images.target(PLAN, spec), images.target(PLAN, spec)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    other = plan_records(2, categories={"subject_bg_style": [4]}, seed=3, size=32)[1]
    assert not np.array_equal(a, images.target(other, ProceduralText().scene(other)))


def test_each_reference_is_an_edit_of_the_target_with_its_own_noise(images) -> None:
    spec = ProceduralText().scene(PLAN)
    target = images.target(PLAN, spec)
    background = images.reference(PLAN, spec, "background", target)
    style = images.reference(PLAN, spec, "style", target)
    assert background.shape == style.shape == (32, 32, 3)
    assert not np.array_equal(background, style)
    assert np.array_equal(background, images.reference(PLAN, spec, "background", target))
    with pytest.raises(ValueError, match="no edit instruction for a 'pose' reference"):
        images.reference(PLAN, spec, "pose", target)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(FileNotFoundError, match="edit_path: 'nowhere' is neither a model folder"):
        ModelImages("tiny", "nowhere")
    with pytest.raises(ValueError, match="steps must be a positive int"):
        ModelImages("tiny", "tiny", steps=0)
    with pytest.raises(ValueError, match=r"unknown reference types \['mood'\]"):
        ModelImages("tiny", "tiny", instructions={"mood": "x"})


def test_a_build_runs_end_to_end_on_tiny_models(tmp_path: Path) -> None:
    options = {"text_to_image": "tiny", "edit_path": "tiny", "steps": 2, "edit_steps": 2, "device": "cpu"}
    config = DataConfig(images=ProviderSpec(provider="models", options=options), segmentation=ProviderSpec(provider="colour"),
                        filters=[])  # fmt: skip
    plans = plan_records(3, categories={"subject_bg": [3], "subject_lighting": [3]}, seed=0, size=32)
    report = run_shard(plans, build_providers(config), tmp_path)
    summary = finalize(tmp_path, plans)
    assert report.made == 3 and summary["present"] == 3 and "error" not in summary["dropped"]
    records = [
        json.loads(line)
        for line in (tmp_path / "records" / "shard-000-of-001.jsonl").read_text().splitlines()
    ]
    kept = [r for r in records if r["dropped_by"] is None]
    for record in kept:
        for ref in record["references"]:
            assert (tmp_path / record["split"] / ref["path"]).is_file()
