"""Evaluation metrics of the OmniRef-Bench protocol."""

from rewardkit.evaluation.benchmark import (
    BenchInstance,
    Benchmark,
    Reference,
    load_benchmark,
    load_keypoints,
    write_benchmark,
)
from rewardkit.evaluation.lighting import LIGHTING_WEIGHTS, LightingScore, lighting_consistency
from rewardkit.evaluation.pose import COCO_BONES, COCO_SIGMAS, POSE_WEIGHTS, PoseScore, pose_consistency

__all__ = [
    "COCO_BONES",
    "COCO_SIGMAS",
    "LIGHTING_WEIGHTS",
    "POSE_WEIGHTS",
    "BenchInstance",
    "Benchmark",
    "LightingScore",
    "PoseScore",
    "Reference",
    "lighting_consistency",
    "load_benchmark",
    "load_keypoints",
    "pose_consistency",
    "write_benchmark",
]
