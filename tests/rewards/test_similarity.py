import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

import rewardkit
from rewardkit.rewards import pairwise_cosine, reduce_per_sample
from tests.rewards.helpers import smooth_image

FLOATS = st.floats(-10, 10, allow_nan=False, width=32)


@given(st.integers(1, 6), st.integers(1, 9), st.data())
def test_cosine_bounds_symmetry_and_scale_invariance(m, d, data) -> None:
    a = torch.tensor(data.draw(st.lists(st.lists(FLOATS, min_size=d, max_size=d), min_size=m, max_size=m)))
    b = torch.tensor(data.draw(st.lists(st.lists(FLOATS, min_size=d, max_size=d), min_size=m, max_size=m)))
    s = pairwise_cosine(a, b)
    assert s.shape == (m,)
    assert bool((s >= -1).all()) and bool((s <= 1).all())
    torch.testing.assert_close(s, pairwise_cosine(b, a))
    nonzero = a.norm(dim=1) > 1e-3
    both = nonzero & (b.norm(dim=1) > 1e-3)
    torch.testing.assert_close(pairwise_cosine(3.5 * a, b)[both], s[both], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        pairwise_cosine(a, a)[nonzero], torch.ones(int(nonzero.sum())), atol=1e-5, rtol=0
    )


def test_cosine_of_huge_flat_features_is_one_for_identical_rows() -> None:
    f = torch.randn(2, 576 * 768)  # DyRef's flat SigLIP2 feature size
    torch.testing.assert_close(pairwise_cosine(f, f), torch.ones(2), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="NaN"):
        pairwise_cosine(f, f.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="equal shapes"):
        pairwise_cosine(f, f[:1])


@given(st.integers(1, 5), st.lists(st.tuples(st.integers(0, 4), st.floats(-1, 1)), max_size=12),
       st.sampled_from(["mean", "max", "first"]))  # fmt: skip
def test_reduce_per_sample_matches_python(n, pairs, how) -> None:
    pairs = [(o % n, v) for o, v in pairs]
    values = torch.tensor([v for _, v in pairs], dtype=torch.float64)
    owner = torch.tensor([o for o, _ in pairs], dtype=torch.long)
    got = reduce_per_sample(values, owner, n, how)
    for i in range(n):
        mine = [v for o, v in pairs if o == i]
        if not mine:
            assert math.isnan(float(got[i]))
            continue
        want = {"mean": sum(mine) / len(mine), "max": max(mine), "first": mine[0]}[how]
        assert float(got[i]) == pytest.approx(want, abs=1e-12)


def test_reduce_per_sample_errors() -> None:
    with pytest.raises(ValueError, match="reduce must be one of"):
        reduce_per_sample(torch.zeros(2), torch.zeros(2, dtype=torch.long), 1, "median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        reduce_per_sample(torch.zeros(2), torch.tensor([0, 2]), 2)


def _sims(encoder, gen, targets):
    feats = encoder.encode([gen, *targets])
    return pairwise_cosine(feats[:1].expand(len(targets), -1), feats[1:])


def test_identical_target_scores_one_and_extras(toy_encoder) -> None:
    img = smooth_image(0)
    reward = rewardkit.SimilarityReward(toy_encoder)
    out = reward(img[None], rewardkit.SampleContext(targets=(img,), n_refs=4))
    assert float(out.scores[0]) == pytest.approx(1.0, abs=1e-6)
    assert float(out.extras["sim_raw"][0]) == pytest.approx(1.0, abs=1e-6)
    assert out.extras["n_refs"].tolist() == [4] and out.extras["n_refs"].dtype == torch.long


def test_drs_is_applied_per_target_before_the_reduce(toy_encoder) -> None:
    gen, t1, t2 = smooth_image(0), smooth_image(1), smooth_image(0).flip(-1)
    s = _sims(toy_encoder, gen, [t1, t2]).double()
    n_refs = 5
    k = 10 + 3 * (n_refs - 2)
    config = rewardkit.SimilarityConfig(drs=True, tau=0.3)
    out = rewardkit.SimilarityReward(toy_encoder, config)(
        [gen], rewardkit.SampleContext(targets=(t1, t2), n_refs=n_refs)
    )
    per_target = torch.sigmoid(k * (s - 0.3)).mean()
    after_reduce = torch.sigmoid(k * (s.mean() - 0.3))
    assert float(out.scores[0]) == pytest.approx(float(per_target), abs=1e-5)
    assert abs(float(per_target) - float(after_reduce)) > 1e-3  # the order matters here
    assert float(out.extras["sim_raw"][0]) == pytest.approx(float(s.mean()), abs=1e-6)


def test_reduce_max_and_custom_scaling(toy_encoder) -> None:
    gen, t1, t2 = smooth_image(0), smooth_image(1), smooth_image(2)
    s = _sims(toy_encoder, gen, [t1, t2])
    ctx = rewardkit.SampleContext(targets=(t1, t2))
    calls = []

    def affine(similarity, n_refs):
        calls.append(n_refs.tolist())
        return (similarity + 1) / 2

    out = rewardkit.SimilarityReward(toy_encoder, rewardkit.SimilarityConfig(reduce="max", scaling=affine))(
        [gen], ctx
    )
    assert float(out.scores[0]) == pytest.approx((float(s.max()) + 1) / 2, abs=1e-6)
    assert float(out.extras["sim_raw"][0]) == pytest.approx(float(s.max()), abs=1e-6)
    assert calls == [[2, 2]]  # one n_refs per target (fallback: the 2 targets)


def test_compare_against_references_of_one_type(toy_encoder) -> None:
    gen = smooth_image(0)
    ctx = rewardkit.SampleContext(
        targets=(smooth_image(9),),
        references=(rewardkit.Reference(smooth_image(3), "style"), rewardkit.Reference(gen, "subject")),
    )
    subject = rewardkit.SimilarityReward(toy_encoder, rewardkit.SimilarityConfig(compare="subject"))
    assert float(subject([gen], ctx).scores[0]) == pytest.approx(1.0, abs=1e-6)
    lighting = rewardkit.SimilarityReward(toy_encoder, rewardkit.SimilarityConfig(compare="lighting"))
    out = lighting([gen], ctx)
    assert math.isnan(float(out.scores[0])) and math.isnan(float(out.extras["sim_raw"][0]))


def test_shared_targets_are_encoded_once(toy_encoder) -> None:
    target = smooth_image(1)
    gens = torch.stack([smooth_image(i) for i in range(4)])
    rewardkit.SimilarityReward(toy_encoder)(gens, rewardkit.SampleContext(targets=(target,)))
    assert toy_encoder.seen == 5  # 4 generated + 1 shared target


def test_samples_without_targets_get_nan(toy_encoder) -> None:
    img = smooth_image(0)
    ctxs = [rewardkit.SampleContext(targets=(img,)), rewardkit.SampleContext()]
    out = rewardkit.SimilarityReward(toy_encoder, rewardkit.SimilarityConfig(drs=True))([img, img], ctxs)
    assert float(out.scores[0]) > 0.5 and math.isnan(float(out.scores[1]))
    none = rewardkit.SimilarityReward(toy_encoder)([img], rewardkit.SampleContext())
    assert math.isnan(float(none.scores[0]))


def test_bad_inputs_say_what_is_wrong(toy_encoder) -> None:
    reward = rewardkit.SimilarityReward(toy_encoder)
    ctx = rewardkit.SampleContext(targets=(smooth_image(0),))
    with pytest.raises(ValueError, match="NaN"):
        reward(torch.full((1, 3, 8, 8), float("nan")), ctx)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        reward(torch.rand(3, 8, 8), ctx)
    with pytest.raises(ValueError, match="one SampleContext per image"):
        reward(torch.rand(2, 3, 8, 8), [ctx])
    with pytest.raises(ValueError, match="target"):
        reward(torch.rand(1, 3, 8, 8), rewardkit.SampleContext(targets=(torch.rand(3, 8, 8) * 3,)))
    with pytest.raises(ValueError, match="compare"):
        rewardkit.SimilarityConfig(compare="colour")
    with pytest.raises(ValueError, match="k_mode"):
        rewardkit.SimilarityConfig(drs=True, k_mode="steep")
    with pytest.raises(TypeError, match="ImageEncoder"):
        rewardkit.SimilarityReward(object())  # type: ignore[arg-type]


def test_tiny_siglip_flat_reward_is_one_for_identical_images(tiny_siglip) -> None:
    img, other = smooth_image(0, size=40), smooth_image(5, size=40)
    reward = rewardkit.SimilarityReward(tiny_siglip, rewardkit.SimilarityConfig(drs=True))
    out = reward([img, other], rewardkit.SampleContext(targets=(img,), n_refs=3))
    assert float(out.extras["sim_raw"][0]) == pytest.approx(1.0, abs=1e-5)
    assert float(out.extras["sim_raw"][1]) < 0.999
    assert float(out.scores[0]) == pytest.approx(float(torch.sigmoid(torch.tensor(13 * 0.35))), abs=1e-5)
