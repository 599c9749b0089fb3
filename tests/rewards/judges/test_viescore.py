import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

import rewardkit
from rewardkit.rewards.judges import arcface_grade, weighted_ref_viescore
from tests.rewards.helpers import smooth_image
from tests.rewards.judges.server import chat, n_images, prompt_text, serve, smart_answer


def test_arcface_grade_table_and_boundaries() -> None:
    c = torch.tensor([1.0, 0.45, 0.4499, 0.30, 0.2999, 0.15, 0.1499, 0.05, 0.0499, -1.0, float("nan")])
    out = arcface_grade(c)
    torch.testing.assert_close(out[:-1], torch.tensor([1.0, 1.0, 0.7, 0.7, 0.5, 0.5, 0.2, 0.2, 0.0, 0.0]))
    assert math.isnan(float(out[-1]))


@given(st.floats(-1, 1), st.floats(-1, 1))
def test_arcface_grade_is_monotone(a, b) -> None:
    lo, hi = sorted((a, b))
    assert float(arcface_grade(lo)) <= float(arcface_grade(hi))


@given(st.floats(0, 1), *[st.floats(0, 10)] * 4)
def test_weighted_ref_viescore_formula_and_range(w, sr, pf, nat, art) -> None:
    got = float(weighted_ref_viescore(w, sr, pf, nat, art))
    assert got == pytest.approx(w * math.sqrt(sr * pf) * math.sqrt(nat * art), rel=1e-5, abs=1e-4)
    assert -1e-6 <= got <= 100 + 1e-4


def test_weighted_ref_viescore_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="weight"):
        weighted_ref_viescore(1.5, 5, 5, 5, 5)
    with pytest.raises(ValueError, match="artifacts"):
        weighted_ref_viescore(1, 5, 5, 5, 12)
    assert math.isnan(float(weighted_ref_viescore(float("nan"), 5, 5, 5, 5)))


IMG = [smooth_image(i, 40) for i in range(5)]


def _context(face: bool = False) -> rewardkit.SampleContext:
    return rewardkit.SampleContext(
        prompt="the man of image 1 holds the cup of image 2",
        targets=(IMG[4],),
        references=(
            rewardkit.Reference(IMG[1], "subject", "a man", is_face=face),
            rewardkit.Reference(IMG[2], "subject", "a cup"),
        ),
    )


def test_full_score_with_vlm_presence() -> None:
    with serve(smart_answer) as server:
        client = rewardkit.ChatClient(base_url=server.url, model="judge", backoff=0.0)
        out = rewardkit.WeightedRefVIEScore(client)([IMG[0]], [_context()])
    # W = 1 (both present), SC = sqrt(4 * 9) = 6, PQ = sqrt(8 * 8) = 8 -> 48
    assert float(out.scores[0]) == pytest.approx(48.0)
    assert (float(out.extras["W"][0]), float(out.extras["SC"][0]), float(out.extras["PQ"][0])) == (
        1.0,
        6.0,
        8.0,
    )
    assert server.count == 4  # SC + PQ + 2 presence questions
    sc = next(b for b in server.requests if "prompt_following" in prompt_text(b))
    assert n_images(sc) == 2 and "holds the cup" in prompt_text(sc)


def test_face_sources_use_the_face_similarity_and_a_separate_presence_judge() -> None:
    with (
        serve(smart_answer) as judge_server,
        serve(lambda body, n: chat('{"answer": "no"}')) as presence_server,
    ):
        client = rewardkit.ChatClient(base_url=judge_server.url, model="gpt", backoff=0.0)
        presence = rewardkit.ChatClient(base_url=presence_server.url, model="qwen3-vl", backoff=0.0)
        seen = []

        def face(source, generated):
            seen.append((tuple(source.shape), tuple(generated.shape)))
            return 0.35  # -> grade 0.7

        out = rewardkit.WeightedRefVIEScore(client, presence_client=presence, face_similarity=face)(
            [IMG[0]], [_context(True)]
        )
    assert seen == [((3, 40, 40), (3, 40, 40))]
    assert float(out.extras["W"][0]) == pytest.approx((0.7 + 0.0) / 2)
    assert float(out.scores[0]) == pytest.approx(0.35 * 48.0, rel=1e-5)
    assert judge_server.count == 2 and presence_server.count == 1


def test_face_source_without_face_model_is_an_error_that_says_what_to_pass() -> None:
    client = rewardkit.ChatClient(base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(ValueError, match="face_similarity="):
        rewardkit.WeightedRefVIEScore(client)([IMG[0]], [_context(True)])


def test_ref_viescore_without_weighting_and_missing_reference_image() -> None:
    with serve(smart_answer) as server:
        client = rewardkit.ChatClient(base_url=server.url, model="judge", backoff=0.0)
        out = rewardkit.WeightedRefVIEScore(client, weighting=False)(
            [IMG[0], IMG[0]], [_context(True), rewardkit.SampleContext(prompt="no reference image")]
        )
    assert float(out.scores[0]) == pytest.approx(48.0) and math.isnan(float(out.scores[1]))
    assert server.count == 2  # no presence calls, nothing for the sample without a reference image


def test_unreadable_ratings_give_nan() -> None:
    with serve(lambda body, n: chat('{"prompt_following": "great"}')) as server:
        client = rewardkit.ChatClient(base_url=server.url, model="judge", backoff=0.0)
        out = rewardkit.WeightedRefVIEScore(client, weighting=False)([IMG[0]], [_context()])
    assert math.isnan(float(out.scores[0])) and out.extras["judge_ok"].tolist() == [0.0]
