"""Evaluation metrics of the OmniRef-Bench protocol."""

from rewardkit.evaluation.lighting import LIGHTING_WEIGHTS, LightingScore, lighting_consistency
from rewardkit.evaluation.pose import COCO_BONES, COCO_SIGMAS, POSE_WEIGHTS, PoseScore, pose_consistency

__all__ = [
    "COCO_BONES",
    "COCO_SIGMAS",
    "LIGHTING_WEIGHTS",
    "POSE_WEIGHTS",
    "LightingScore",
    "PoseScore",
    "lighting_consistency",
    "pose_consistency",
]
