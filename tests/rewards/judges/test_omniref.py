import json
import math

import pytest
import torch

import rewardkit
from rewardkit.rewards.judges import OMNIREF_DIMENSIONS, omniref_applicable
from tests.rewards.helpers import smooth_image
from tests.rewards.judges.server import chat, n_images, prompt_text, serve, smart_answer

IMG = [smooth_image(i, 40) for i in range(5)]
FULL = rewardkit.SampleContext(
    prompt="the cat from image 1, in the style of image 2, against image 3",
    references=(rewardkit.Reference(IMG[1], "subject", "a cat"), rewardkit.Reference(IMG[2], "style"),
                rewardkit.Reference(IMG[3], "background")),
)  # fmt: skip
SUBJECT_ONLY = rewardkit.SampleContext(prompt="the cat", references=(rewardkit.Reference(IMG[1], "subject"),))


def judge(server, **kwargs):
    client = rewardkit.ChatClient(base_url=server.url, model="judge", backoff=0.0, max_retries=1,
                                  cache_dir=kwargs.pop("cache_dir", None))  # fmt: skip
    return rewardkit.OmniRefJudge(client, **kwargs)


def test_applicable_dimensions_come_from_the_references() -> None:
    assert omniref_applicable(FULL) == (
        "text_adherence", "subject_consistency", "style_consistency", "background_consistency", "aesthetic_quality",
    )  # fmt: skip
    assert omniref_applicable(SUBJECT_ONLY) == ("text_adherence", "subject_consistency", "aesthetic_quality")


def test_scores_are_the_mean_of_applicable_dimensions() -> None:
    with serve(smart_answer) as server:
        out = judge(server)([IMG[0], IMG[4]], [FULL, SUBJECT_ONLY])
    # canned verdict: 8, 7.5, 6, -1 (lighting), 9, 8.5
    assert float(out.scores[0]) == pytest.approx((8 + 7.5 + 6 + 9 + 8.5) / 5)
    assert float(out.scores[1]) == pytest.approx(
        (8 + 7.5 + 8.5) / 3
    )  # style/background scored but not applicable
    assert math.isnan(float(out.extras["style_consistency"][1]))
    assert math.isnan(float(out.extras["lighting_consistency"][0]))
    assert out.extras["judge_ok"].tolist() == [1.0, 1.0]
    assert set(OMNIREF_DIMENSIONS) <= set(out.extras)


def test_model_applicability_trusts_the_judge() -> None:
    with serve(smart_answer) as server:
        out = judge(server, applicability="model")([IMG[4]], [SUBJECT_ONLY])
    assert float(out.scores[0]) == pytest.approx((8 + 7.5 + 6 + 9 + 8.5) / 5)


def test_request_layout_keeps_the_prompt_numbering() -> None:
    with serve(smart_answer) as server:
        judge(server)([IMG[0]], [FULL])
    body = server.requests[0]
    text = prompt_text(body)
    assert body["messages"][0]["role"] == "system" and "-1" in body["messages"][0]["content"]
    assert n_images(body) == 4  # 3 references + the generated image
    labels = [p["text"] for p in body["messages"][1]["content"] if p["type"] == "text"]
    assert labels[1:] == ["Image 1 (subject reference: a cat):", "Image 2 (style reference):",
                          "Image 3 (background reference):", "Generated image:"]  # fmt: skip
    assert "lighting: not provided" in text and "style: provided" in text
    url = body["messages"][1]["content"][2]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")


def test_malformed_answers_recovered_or_nan(tmp_path) -> None:
    answers = {  # keyed by the prompt, so the concurrent requests' arrival order does not matter
        "the cat": chat(
            "```json\n{'text_adherence': {'score': 6}, 'subject_consistency': {'score': '8/10'},}\n```"
        ),
        "x": chat('text_adherence: {"score": 4 ... aesthetic_quality: {"score": 5'),  # broken: regex fallback
    }

    def responder(body, n):
        prompt = prompt_text(body).split("Text prompt: ")[1].split("\n")[0]
        return answers.get(prompt, chat("I cannot evaluate this image."))

    with serve(responder) as server:
        reward = judge(server, cache_dir=tmp_path)
        out = reward(
            [IMG[4]] * 3,
            [SUBJECT_ONLY, rewardkit.SampleContext(prompt="x"), rewardkit.SampleContext(prompt="y")],
        )
        assert float(out.scores[0]) == pytest.approx(7.0)
        assert float(out.scores[1]) == pytest.approx(4.5)
        assert math.isnan(float(out.scores[2])) and out.extras["judge_ok"].tolist() == [1.0, 1.0, 0.0]
        assert len(list(tmp_path.rglob("*.json"))) == 2  # the unreadable answer was dropped from the cache
        with pytest.raises(rewardkit.JudgeError, match="could not read"):
            judge(server, on_error="raise")([IMG[4]], [rewardkit.SampleContext(prompt="z")])


def test_failed_requests_give_nan_or_raise() -> None:
    from tests.rewards.judges.server import Reply

    with serve(lambda body, n: Reply(500, {"error": "down"})) as server:
        out = judge(server)([IMG[0]], [FULL])
        assert math.isnan(float(out.scores[0])) and out.extras["judge_ok"].tolist() == [0.0]
        with pytest.raises(rewardkit.JudgeError):
            judge(server, on_error="raise")([IMG[0]], [FULL])


def test_rerun_is_served_from_the_cache(tmp_path) -> None:
    with serve(smart_answer) as server:
        first = judge(server, cache_dir=tmp_path)([IMG[0], IMG[4]], [FULL, SUBJECT_ONLY])
        second = judge(server, cache_dir=tmp_path)([IMG[0], IMG[4]], [FULL, SUBJECT_ONLY])
    assert server.count == 2
    torch.testing.assert_close(first.scores, second.scores)


def test_verdict_parser_marks_na_and_missing() -> None:
    client = rewardkit.ChatClient(base_url="http://127.0.0.1:9/v1", model="m")
    verdict = rewardkit.OmniRefJudge(client).parse(
        json.dumps({"text_adherence": {"score": -1}, "aesthetic_quality": 11})
    )
    assert verdict["text_adherence"] == -1.0 and verdict["aesthetic_quality"] is None
    assert verdict["style_consistency"] is None
    with pytest.raises(ValueError, match="applicability"):
        rewardkit.OmniRefJudge(client, applicability="trust")  # type: ignore[arg-type]


def _script_parse(text: str) -> dict:
    """``mllm_eval.py``'s parsing: strict JSON, else the greedy first ``{...}`` span."""
    import re

    try:
        return json.loads(text)
    except ValueError:
        return json.loads(re.search(r"\{.*\}", text, re.DOTALL).group())


def _answer(rng, wrap: str) -> str:
    body = {
        dim: {"score": float(rng.choice([-1, 0, 2.5, 6, 7.5, 8, 10])), "reasoning": "N/A {x}"}
        for dim in OMNIREF_DIMENSIONS
    }
    body["overall_average_score"] = 7.0  # collected by the script, never used
    text = json.dumps(body, indent=int(rng.integers(0, 3)) or None)
    return {
        "plain": text,
        "prose": f"Here is my evaluation:\n{text}\nThanks.",
        "fenced": f"```json\n{text}\n```",
    }[wrap]


@pytest.mark.parametrize("wrap", ["plain", "prose", "fenced"])
@pytest.mark.parametrize("seed", range(4))
def test_answers_the_script_reads_give_its_scores(wrap: str, seed: int) -> None:
    import numpy as np

    text = _answer(np.random.default_rng(seed), wrap)
    script = _script_parse(text)
    client = rewardkit.ChatClient(base_url="http://127.0.0.1:9/v1", model="m")
    ours = rewardkit.OmniRefJudge(client).parse(text)
    assert ours == {dim: float(script[dim]["score"]) for dim in OMNIREF_DIMENSIONS}
