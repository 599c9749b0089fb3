"""Registry lookups and the contract every registered reward must meet (CPU, offline)."""

import math

import pytest
import torch

import rewardkit
from rewardkit.rewards import tiny_encoder_config
from tests.rewards.helpers import smooth_image
from tests.rewards.judges.server import serve, smart_answer


def _options(name: str, url: str) -> dict:
    judge = {"base_url": url, "model": "judge-test", "api_key": "sk-test", "backoff": 0.0}
    return {
        "image_similarity": {"encoder": "dinov2", "config": tiny_encoder_config("dinov2"), "device": "cpu"},
        "siglip_similarity": {"config": tiny_encoder_config("siglip"), "drs": True, "device": "cpu"},
        "clip_similarity": {"config": tiny_encoder_config("clip"), "device": "cpu"},
        "dinov2_similarity": {"config": tiny_encoder_config("dinov2"), "pooling": "mean", "device": "cpu"},
        "csd_score": {"config": rewardkit.CSDConfig.tiny(), "device": "cpu"},
        "offline_similarity": {"image_size": 64, "device": "cpu"},
        "offline_style": {"image_size": 64, "device": "cpu"},
        "omniref_judge": judge,
        "dual_ref_yes_no": judge,
        "weighted_ref_viescore": judge,
    }[name]


# Samples 0-1 have every reference type and a target; sample 2 has a subject reference only.
IMG = [smooth_image(i, 40) for i in range(6)]
FULL = rewardkit.SampleContext(
    prompt="the cat from image 1 in the style of image 2",
    targets=(IMG[3],),
    references=(rewardkit.Reference(IMG[4], "subject", "a cat"), rewardkit.Reference(IMG[5], "style"),
                rewardkit.Reference(IMG[2], "background")),
)  # fmt: skip
SUBJECT_ONLY = rewardkit.SampleContext(
    prompt="the cat", targets=(IMG[3],), references=(rewardkit.Reference(IMG[4]),)
)
CONTEXTS = [FULL, FULL, SUBJECT_ONLY]
NOT_APPLICABLE = {"csd_score": [2], "offline_style": [2]}  # no style reference


def test_list_rewards_is_sorted_and_complete() -> None:
    names = rewardkit.list_rewards()
    assert names == sorted(rewardkit.rewards.REWARDS)
    assert {
        "siglip_similarity",
        "csd_score",
        "omniref_judge",
        "dual_ref_yes_no",
        "weighted_ref_viescore",
    } <= set(names)


def test_unknown_names_list_the_registered_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown reward 'sigclip'.*'csd_score'"):
        rewardkit.load_reward("sigclip")
    with pytest.raises(ValueError, match=r"unknown encoder 'vit'.*'siglip'"):
        rewardkit.load_encoder("vit")
    assert rewardkit.list_encoders() == sorted(rewardkit.rewards.ENCODERS)


def test_unexpected_option_names_the_reward() -> None:
    with pytest.raises(TypeError, match=r"reward 'csd_score'.*bogus"):
        rewardkit.load_reward("csd_score", bogus=1)


def test_every_registered_reward_has_contract_options() -> None:
    for name in rewardkit.list_rewards():
        assert _options(name, "http://127.0.0.1:1/v1") is not None  # KeyError if a reward has no test options


@pytest.mark.parametrize("name", rewardkit.list_rewards())
def test_registered_reward_contract(name) -> None:
    with serve(smart_answer) as server:
        reward = rewardkit.load_reward(name, **_options(name, server.url))
        assert isinstance(reward, rewardkit.RewardModel) and isinstance(reward.name, str)
        images = torch.stack(IMG[:3])
        out = reward(images, CONTEXTS)
        again = reward([IMG[0], IMG[1], IMG[2]], CONTEXTS)  # a list of images works too, and is deterministic
    assert out.scores.shape == (3,) and out.scores.dtype == torch.float32
    for key, value in out.extras.items():
        assert value.shape[0] == 3, key
    nan = torch.isnan(out.scores)
    expected_nan = NOT_APPLICABLE.get(name, [])
    assert nan.nonzero().flatten().tolist() == expected_nan, (name, out.scores)
    torch.testing.assert_close(out.scores, again.scores, equal_nan=True)
    finite = out.scores[~nan]
    assert bool(torch.isfinite(finite).all())
    assert not math.isnan(float(out.scores[0]))
