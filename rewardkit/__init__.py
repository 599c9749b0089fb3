"""rewardkit: reward modeling and RL fine-tuning for flow-matching image models.

The top-level package re-exports the public API; everything listed in ``__all__`` is stable.
``import rewardkit`` loads only the core math (torch and the pure tensor functions): the
evaluation, reward models, judges and the backbone registry load when one of their names is
first used, and never diffusers or transformers.
"""

import importlib
from typing import TYPE_CHECKING, Any

from rewardkit.core.advantages import gdpo_advantages, group_advantages
from rewardkit.core.baseline import BaselineState, baseline_advantages
from rewardkit.core.grouping import group_id, group_ids
from rewardkit.core.kl import kl_gaussian, kl_v_based, kl_x_based
from rewardkit.core.loss import PolicyLossStats, clipped_policy_loss
from rewardkit.core.scaling import drs_scale, drs_steepness
from rewardkit.core.schedules import (
    exponential_shift_sigmas,
    flux2_empirical_mu,
    flux2_sigmas,
    qwen_image_mu,
    qwen_image_sigmas,
    sd3_sigmas,
    sde_window,
    sigmas_from_scheduler,
)
from rewardkit.core.sde import SDEConfig, SDELogProb, SDEStep, sde_log_prob, sde_step
from rewardkit.core.weighting import dar_weights

# Everything else is imported on first attribute access (PEP 562), so a trainer that wants
# the math does not pay for the evaluation stack. name → module that defines it.
_LAZY: dict[str, str] = {
    "GatheredBatch": "rewardkit.training",
    "gather_samples": "rewardkit.training",
    "list_backbones": "rewardkit.backbone.registry",
    "load_backbone": "rewardkit.backbone.registry",
    "make_tiny_checkpoint": "rewardkit.backbone.registry",
    "LIGHTING_WEIGHTS": "rewardkit.evaluation",
    "POSE_WEIGHTS": "rewardkit.evaluation",
    "LightingScore": "rewardkit.evaluation",
    "PoseScore": "rewardkit.evaluation",
    "lighting_consistency": "rewardkit.evaluation",
    "pose_consistency": "rewardkit.evaluation",
    "EvalConfig": "rewardkit.evaluation.pipeline",
    "evaluate": "rewardkit.evaluation.pipeline",
    "ChatClient": "rewardkit.rewards",
    "ChatClientConfig": "rewardkit.rewards",
    "ChatResult": "rewardkit.rewards",
    "CSDConfig": "rewardkit.rewards",
    "CSDModel": "rewardkit.rewards",
    "DualRefJudge": "rewardkit.rewards",
    "ImageEncoder": "rewardkit.rewards",
    "JudgeError": "rewardkit.rewards",
    "OmniRefJudge": "rewardkit.rewards",
    "Preprocess": "rewardkit.rewards",
    "Reference": "rewardkit.rewards",
    "RewardModel": "rewardkit.rewards",
    "RewardOutput": "rewardkit.rewards",
    "RewardSet": "rewardkit.rewards",
    "RewardSetOutput": "rewardkit.rewards",
    "SampleContext": "rewardkit.rewards",
    "SimilarityConfig": "rewardkit.rewards",
    "SimilarityReward": "rewardkit.rewards",
    "TorchImageEncoder": "rewardkit.rewards",
    "WeightedRefVIEScore": "rewardkit.rewards",
    "WeightedReward": "rewardkit.rewards",
    "arcface_grade": "rewardkit.rewards",
    "clip_encoder": "rewardkit.rewards",
    "convert_csd_checkpoint": "rewardkit.rewards",
    "csd_encoder": "rewardkit.rewards",
    "dinov2_encoder": "rewardkit.rewards",
    "effnet_encoder": "rewardkit.rewards",
    "gram_encoder": "rewardkit.rewards",
    "list_encoders": "rewardkit.rewards",
    "list_rewards": "rewardkit.rewards",
    "load_csd_state_dict": "rewardkit.rewards",
    "load_encoder": "rewardkit.rewards",
    "load_reward": "rewardkit.rewards",
    "open_clip_encoder": "rewardkit.rewards",
    "parse_json_object": "rewardkit.rewards",
    "siglip_encoder": "rewardkit.rewards",
    "weighted_ref_viescore": "rewardkit.rewards",
}

if TYPE_CHECKING:  # the same names for type checkers, IDEs and the API docs
    from rewardkit.backbone.registry import list_backbones, load_backbone, make_tiny_checkpoint
    from rewardkit.evaluation import (
        LIGHTING_WEIGHTS,
        POSE_WEIGHTS,
        LightingScore,
        PoseScore,
        lighting_consistency,
        pose_consistency,
    )
    from rewardkit.evaluation.pipeline import EvalConfig, evaluate
    from rewardkit.rewards import (
        ChatClient,
        ChatClientConfig,
        ChatResult,
        CSDConfig,
        CSDModel,
        DualRefJudge,
        ImageEncoder,
        JudgeError,
        OmniRefJudge,
        Preprocess,
        Reference,
        RewardModel,
        RewardOutput,
        RewardSet,
        RewardSetOutput,
        SampleContext,
        SimilarityConfig,
        SimilarityReward,
        TorchImageEncoder,
        WeightedRefVIEScore,
        WeightedReward,
        arcface_grade,
        clip_encoder,
        convert_csd_checkpoint,
        csd_encoder,
        dinov2_encoder,
        effnet_encoder,
        gram_encoder,
        list_encoders,
        list_rewards,
        load_csd_state_dict,
        load_encoder,
        load_reward,
        open_clip_encoder,
        parse_json_object,
        siglip_encoder,
        weighted_ref_viescore,
    )
    from rewardkit.training import GatheredBatch, gather_samples


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rewardkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "LIGHTING_WEIGHTS",
    "POSE_WEIGHTS",
    "BaselineState",
    "CSDConfig",
    "CSDModel",
    "ChatClient",
    "ChatClientConfig",
    "ChatResult",
    "DualRefJudge",
    "EvalConfig",
    "GatheredBatch",
    "ImageEncoder",
    "JudgeError",
    "LightingScore",
    "OmniRefJudge",
    "PolicyLossStats",
    "PoseScore",
    "Preprocess",
    "Reference",
    "RewardModel",
    "RewardOutput",
    "RewardSet",
    "RewardSetOutput",
    "SDEConfig",
    "SDELogProb",
    "SDEStep",
    "SampleContext",
    "SimilarityConfig",
    "SimilarityReward",
    "TorchImageEncoder",
    "WeightedRefVIEScore",
    "WeightedReward",
    "__version__",
    "arcface_grade",
    "baseline_advantages",
    "clip_encoder",
    "clipped_policy_loss",
    "convert_csd_checkpoint",
    "csd_encoder",
    "dar_weights",
    "dinov2_encoder",
    "drs_scale",
    "drs_steepness",
    "effnet_encoder",
    "evaluate",
    "exponential_shift_sigmas",
    "flux2_empirical_mu",
    "flux2_sigmas",
    "gather_samples",
    "gdpo_advantages",
    "gram_encoder",
    "group_advantages",
    "group_id",
    "group_ids",
    "kl_gaussian",
    "kl_v_based",
    "kl_x_based",
    "lighting_consistency",
    "list_backbones",
    "list_encoders",
    "list_rewards",
    "load_backbone",
    "load_csd_state_dict",
    "load_encoder",
    "load_reward",
    "make_tiny_checkpoint",
    "open_clip_encoder",
    "parse_json_object",
    "pose_consistency",
    "qwen_image_mu",
    "qwen_image_sigmas",
    "sd3_sigmas",
    "sde_log_prob",
    "sde_step",
    "sde_window",
    "siglip_encoder",
    "sigmas_from_scheduler",
    "weighted_ref_viescore",
]
