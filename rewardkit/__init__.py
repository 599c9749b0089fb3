"""rewardkit: reward modeling and RL fine-tuning for flow-matching image models.

The top-level package re-exports the public API; everything listed in ``__all__`` is stable.
Importing rewardkit never imports diffusers or transformers.
"""

from rewardkit.backbone.registry import list_backbones, load_backbone, make_tiny_checkpoint
from rewardkit.core.advantages import gdpo_advantages, group_advantages
from rewardkit.core.baseline import BaselineState, baseline_advantages
from rewardkit.core.kl import kl_gaussian, kl_v_based, kl_x_based
from rewardkit.core.loss import PolicyLossStats, clipped_policy_loss
from rewardkit.core.scaling import drs_scale, drs_steepness
from rewardkit.core.weighting import dar_weights
from rewardkit.evaluation import (
    LIGHTING_WEIGHTS,
    POSE_WEIGHTS,
    LightingScore,
    PoseScore,
    lighting_consistency,
    pose_consistency,
)

# --- evaluation pipeline (issue 7) ---
# isort: split
from rewardkit.evaluation.pipeline import EvalConfig, evaluate

# --- SDE sampling (issue 3): names added below this line ---
# isort: split
from rewardkit.core.schedules import (
    exponential_shift_sigmas,
    flux2_empirical_mu,
    flux2_sigmas,
    qwen_image_mu,
    qwen_image_sigmas,
    sde_window,
)
from rewardkit.core.sde import SDEStep, sde_log_prob, sde_step

# --- rewards (issue 5) ---
# isort: split
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
    "gdpo_advantages",
    "gram_encoder",
    "group_advantages",
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
    "sde_log_prob",
    "sde_step",
    "sde_window",
    "siglip_encoder",
    "weighted_ref_viescore",
]
