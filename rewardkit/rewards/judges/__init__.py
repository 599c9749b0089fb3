"""MLLM judges over an OpenAI-compatible chat-completions API (standard library HTTP)."""

from rewardkit.rewards.judges.client import (
    ChatClient,
    ChatClientConfig,
    ChatResult,
    JudgeError,
    JudgeHTTPError,
    JudgeTimeoutError,
    Messages,
)
from rewardkit.rewards.judges.dual_ref import DUAL_REF_QUESTIONS, DualRefJudge
from rewardkit.rewards.judges.omniref import OMNIREF_DIMENSIONS, OmniRefJudge, omniref_applicable
from rewardkit.rewards.judges.parsing import (
    JudgeParseError,
    coerce_score,
    parse_json_object,
    parse_yes_no,
    scores_by_regex,
)
from rewardkit.rewards.judges.viescore import WeightedRefVIEScore, arcface_grade, weighted_ref_viescore

__all__ = [
    "DUAL_REF_QUESTIONS",
    "OMNIREF_DIMENSIONS",
    "ChatClient",
    "ChatClientConfig",
    "ChatResult",
    "DualRefJudge",
    "JudgeError",
    "JudgeHTTPError",
    "JudgeParseError",
    "JudgeTimeoutError",
    "Messages",
    "OmniRefJudge",
    "WeightedRefVIEScore",
    "arcface_grade",
    "coerce_score",
    "omniref_applicable",
    "parse_json_object",
    "parse_yes_no",
    "scores_by_regex",
    "weighted_ref_viescore",
]
