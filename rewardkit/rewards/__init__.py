"""Reward models: the protocol, a registry, similarity / CSD / offline encoders and MLLM judges.

Importing this package imports only torch and the standard library; transformers, open_clip,
timm and PIL are imported inside the builders that need them.
"""

from rewardkit.rewards._images import Images, Preprocess, as_image, as_image_list
from rewardkit.rewards.csd import (
    CSDConfig,
    CSDModel,
    convert_csd_checkpoint,
    csd_encoder,
    load_csd_state_dict,
)
from rewardkit.rewards.encoders import (
    ImageEncoder,
    TorchImageEncoder,
    clip_encoder,
    dinov2_encoder,
    open_clip_encoder,
    siglip_encoder,
    tiny_encoder_config,
)
from rewardkit.rewards.judges import (
    ChatClient,
    ChatClientConfig,
    ChatResult,
    DualRefJudge,
    JudgeError,
    JudgeHTTPError,
    JudgeParseError,
    JudgeTimeoutError,
    OmniRefJudge,
    WeightedRefVIEScore,
    arcface_grade,
    parse_json_object,
    weighted_ref_viescore,
)
from rewardkit.rewards.offline import effnet_encoder, gram_encoder
from rewardkit.rewards.protocol import REF_TYPES, Reference, RefType, RewardModel, RewardOutput, SampleContext
from rewardkit.rewards.registry import (
    ENCODERS,
    REWARDS,
    list_encoders,
    list_rewards,
    load_encoder,
    load_reward,
)
from rewardkit.rewards.reward_set import RewardSet, RewardSetOutput, WeightedReward
from rewardkit.rewards.similarity import (
    SimilarityConfig,
    SimilarityReward,
    pairwise_cosine,
    reduce_per_sample,
)

__all__ = [
    "ENCODERS",
    "REF_TYPES",
    "REWARDS",
    "CSDConfig",
    "CSDModel",
    "ChatClient",
    "ChatClientConfig",
    "ChatResult",
    "DualRefJudge",
    "ImageEncoder",
    "Images",
    "JudgeError",
    "JudgeHTTPError",
    "JudgeParseError",
    "JudgeTimeoutError",
    "OmniRefJudge",
    "Preprocess",
    "RefType",
    "Reference",
    "RewardModel",
    "RewardOutput",
    "RewardSet",
    "RewardSetOutput",
    "SampleContext",
    "SimilarityConfig",
    "SimilarityReward",
    "TorchImageEncoder",
    "WeightedRefVIEScore",
    "WeightedReward",
    "arcface_grade",
    "as_image",
    "as_image_list",
    "clip_encoder",
    "convert_csd_checkpoint",
    "csd_encoder",
    "dinov2_encoder",
    "effnet_encoder",
    "gram_encoder",
    "list_encoders",
    "list_rewards",
    "load_csd_state_dict",
    "load_encoder",
    "load_reward",
    "open_clip_encoder",
    "pairwise_cosine",
    "parse_json_object",
    "reduce_per_sample",
    "siglip_encoder",
    "tiny_encoder_config",
    "weighted_ref_viescore",
]
