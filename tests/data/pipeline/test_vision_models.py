"""Grounding DINO, SAM and ViTPose providers on tiny random-weight models (the real classes)."""

from pathlib import Path

import numpy as np
import pytest

from rewardkit.data.pipeline import plan_records, run_shard
from rewardkit.data.pipeline.config import DataConfig, ProviderSpec, build_providers
from rewardkit.data.pipeline.runner import finalize
from rewardkit.data.pipeline.steps import RecordPlan

pytest.importorskip("transformers")

from rewardkit.data.pipeline.vision_models import (
    GroundingDinoGrounder,
    SamSegmenter,
    VitPoseEstimator,
    tiny_model,
)

PLAN = RecordPlan(0, "subject_pose", 3, 0, "train", 48)
IMAGE = np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)


def test_grounding_returns_one_box_or_none_per_name_inside_the_image() -> None:
    names = ["a red kite", "an old boot", "the person"]
    boxes = GroundingDinoGrounder("tiny", threshold=0.0, text_threshold=0.0, device="cpu").boxes(
        IMAGE, names, plan=PLAN
    )
    assert len(boxes) == 3
    for box in boxes:
        assert box is not None  # threshold 0: the best query always counts
        x1, y1, x2, y2 = box
        assert 0 <= x1 < x2 <= 40 and 0 <= y1 < y2 <= 48
    strict = GroundingDinoGrounder("tiny", threshold=1.01, device="cpu").boxes(IMAGE, names, plan=PLAN)
    assert strict == [None, None, None]


def test_sam_gives_one_full_size_mask_per_box() -> None:
    segmenter = SamSegmenter("tiny", device="cpu")
    masks = segmenter.masks(IMAGE, [(2.0, 3.0, 20.0, 30.0), (10.0, 10.0, 39.0, 47.0)], plan=PLAN)
    assert len(masks) == 2 and all(m.shape == (48, 40) and m.dtype == bool for m in masks)
    assert segmenter.masks(IMAGE, [], plan=PLAN) == []


def test_vitpose_gives_coco17_keypoints_in_image_pixels() -> None:
    kp = VitPoseEstimator("tiny", min_mean_score=0.0, device="cpu").keypoints(IMAGE, plan=PLAN)
    assert kp is not None and kp.shape == (17, 3)
    assert np.isfinite(kp).all()
    assert VitPoseEstimator("tiny", min_mean_score=2.0, device="cpu").keypoints(IMAGE, plan=PLAN) is None


def test_bad_paths_and_models_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"path: 'nowhere' is neither a model folder"):
        SamSegmenter("nowhere")
    with pytest.raises(ValueError, match="kind must be one of"):
        tiny_model("yolo", tmp_path)


def test_a_build_runs_on_the_model_providers(tmp_path: Path) -> None:
    config = DataConfig(
        grounding=ProviderSpec(
            provider="grounding-dino", options={"path": "tiny", "threshold": 0.0, "text_threshold": 0.0}
        ),
        segmentation=ProviderSpec(provider="sam", options={"path": "tiny"}),
        pose=ProviderSpec(provider="vitpose", options={"path": "tiny", "min_mean_score": 0.0}),
        filters=[],
    )
    plans = plan_records(4, categories={"subject_pose": [3], "subject": [2]}, seed=0, size=48)
    run_shard(plans, build_providers(config), tmp_path)
    summary = finalize(tmp_path, plans)
    assert summary["present"] == 4 and "error" not in summary["dropped"], summary
