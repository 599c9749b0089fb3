import math

import pytest
import torch

import rewardkit
from rewardkit.rewards import tiny_encoder_config
from tests.rewards.helpers import smooth_image


def _batch():
    """2 prompts x 3 rollouts; prompt 0 has a style reference, prompt 1 does not."""
    target0, target1, style0 = smooth_image(10, 40), smooth_image(11, 40), smooth_image(12, 40)
    refs0 = (rewardkit.Reference(smooth_image(13, 40), "subject"), rewardkit.Reference(style0, "style"))
    refs1 = (rewardkit.Reference(smooth_image(14, 40), "subject"),) * 3
    ctx0 = rewardkit.SampleContext(prompt="a", targets=(target0,), references=refs0)
    ctx1 = rewardkit.SampleContext(prompt="b", targets=(target1,), references=refs1)
    images = [smooth_image(i, 40) for i in range(6)]
    images[0] = target0  # one rollout reproduces its target exactly
    return images, [ctx0] * 3 + [ctx1] * 3, torch.tensor([0, 0, 0, 1, 1, 1])


def test_siglip_drs_plus_csd_feeds_gdpo(tiny_siglip, tiny_csd) -> None:
    similarity = rewardkit.load_reward("siglip_similarity", encoder=tiny_siglip, drs=True, tau=0.65)
    csd = rewardkit.load_reward("csd_score", encoder=tiny_csd)
    reward_set = rewardkit.RewardSet([("image_similarity", similarity, 1.0), ("csd_score", csd, 0.8)])
    images, contexts, groups = _batch()
    out = reward_set(images, contexts)
    assert out.rewards.shape == (6, 2) and out.names == ("image_similarity", "csd_score")
    torch.testing.assert_close(out.weights, torch.tensor([1.0, 0.8]))
    assert bool(torch.isnan(out.column("csd_score")[3:]).all())  # no style reference -> undefined
    assert not bool(torch.isnan(out.rewards[:3]).any())
    sim_raw = out.extras["image_similarity"]["sim_raw"]
    assert float(sim_raw[0]) == pytest.approx(1.0, abs=1e-5)
    k = torch.tensor([10.0 + 3 * (2 - 2)] * 3 + [10.0 + 3 * (3 - 2)] * 3)  # n_refs 2 and 3
    torch.testing.assert_close(
        out.column("image_similarity"), torch.sigmoid(k * (sim_raw - 0.65)), atol=1e-6, rtol=0
    )
    advantages = out.advantages(groups)
    torch.testing.assert_close(advantages, rewardkit.gdpo_advantages(out.rewards, groups, [1.0, 0.8]))
    assert bool(torch.isfinite(advantages).all()) and advantages.shape == (6,)
    weights = rewardkit.dar_weights(sim_raw, groups)  # DAR's difficulty signal is the raw similarity
    assert weights.shape == (6,)


def test_from_specs_builds_through_the_registry(toy_encoder) -> None:
    reward_set = rewardkit.RewardSet.from_specs(
        [
            {"reward": "image_similarity", "weight": 1.0, "options": {"encoder": toy_encoder}},
            {"reward": "image_similarity", "name": "subject_sim", "weight": 0.5,
             "options": {"encoder": toy_encoder, "compare": "subject", "reduce": "max"}},
        ]
    )  # fmt: skip
    assert reward_set.names == ("image_similarity", "subject_sim")
    images, contexts, _ = _batch()
    out = reward_set(images, contexts)
    assert out.rewards.shape == (6, 2) and not bool(torch.isnan(out.rewards).any())
    with pytest.raises(ValueError, match="'reward'"):
        rewardkit.RewardSet.from_specs([{"weight": 1.0}])


def test_reward_set_validation(toy_encoder) -> None:
    reward = rewardkit.SimilarityReward(toy_encoder)
    with pytest.raises(ValueError, match="duplicates"):
        rewardkit.RewardSet([("a", reward, 1.0), ("a", reward, 2.0)])
    with pytest.raises(ValueError, match="finite"):
        rewardkit.RewardSet([("a", reward, math.inf)])
    with pytest.raises(ValueError, match="at least one"):
        rewardkit.RewardSet([])
    with pytest.raises(KeyError, match="columns are"):
        rewardkit.RewardSet([("a", reward, 1.0)])([smooth_image(0)], rewardkit.SampleContext()).column("b")

    class Broken:
        name = "broken"

        def __call__(self, images, contexts):
            return rewardkit.RewardOutput(torch.zeros(1))

    with pytest.raises(ValueError, match=r"expected \(2,\)"):
        rewardkit.RewardSet([("broken", Broken(), 1.0)])(torch.rand(2, 3, 8, 8), rewardkit.SampleContext())


def test_reward_set_with_real_tiny_configs_end_to_end() -> None:
    similarity = rewardkit.load_reward(
        "siglip_similarity", config=tiny_encoder_config("siglip"), device="cpu", drs=True
    )
    csd = rewardkit.load_reward("csd_score", config=rewardkit.CSDConfig.tiny(), device="cpu")
    out = rewardkit.RewardSet([("image_similarity", similarity, 1.0), ("csd_score", csd, 0.8)])(*_batch()[:2])
    assert out.rewards.shape == (6, 2)
