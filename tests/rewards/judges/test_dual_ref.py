import json
import math

import pytest

import rewardkit
from rewardkit.rewards.judges import DUAL_REF_QUESTIONS
from tests.rewards.helpers import smooth_image
from tests.rewards.judges.server import chat, n_images, prompt_text, serve, smart_answer

IMG = [smooth_image(i, 40) for i in range(3)]
CTX = rewardkit.SampleContext(
    prompt="put the dog of image 1 into the scene of image 2",
    references=(rewardkit.Reference(IMG[1], "subject"), rewardkit.Reference(IMG[2], "background")),
)


def judge(server, **kwargs):
    client = rewardkit.ChatClient(base_url=server.url, model="judge", backoff=0.0, max_retries=0)
    return rewardkit.DualRefJudge(client, **kwargs)


def test_joint_mode_averages_three_binaries() -> None:
    with serve(smart_answer) as server:
        out = judge(server)([IMG[0]], [CTX])
    assert float(out.scores[0]) == pytest.approx(2 / 3)  # yes, no, yes
    assert [float(out.extras[k][0]) for k in DUAL_REF_QUESTIONS] == [1.0, 0.0, 1.0]
    assert server.count == 1 and n_images(server.requests[0]) == 3
    assert all(q in prompt_text(server.requests[0]) for q in DUAL_REF_QUESTIONS.values())


def test_separate_mode_asks_each_question() -> None:
    with serve(smart_answer) as server:
        out = judge(server, mode="separate")([IMG[0]], [CTX])
    assert server.count == 3 and float(out.scores[0]) == 1.0


def test_score_is_on_the_thirds_grid_or_nan() -> None:
    answers = [
        chat(json.dumps({k: {"answer": "no"} for k in DUAL_REF_QUESTIONS})),
        chat("instruction_following: yes"),  # unreadable as JSON -> NaN
        chat(
            json.dumps({"instruction_following": "Yes.", "reference_consistency": "No", "realism": "maybe"})
        ),
    ]
    with serve(lambda body, n: answers[n - 1]) as server:
        client = rewardkit.ChatClient(
            base_url=server.url, model="judge", backoff=0.0, max_retries=0, max_concurrency=1
        )
        out = rewardkit.DualRefJudge(client)([IMG[0]] * 3, [CTX] * 3)
    assert float(out.scores[0]) == 0.0
    assert math.isnan(float(out.scores[1])) and math.isnan(float(out.scores[2]))
    assert out.extras["judge_ok"].tolist() == [1.0, 0.0, 0.0]
    assert float(out.extras["instruction_following"][2]) == 1.0 and math.isnan(
        float(out.extras["realism"][2])
    )


def test_bad_mode() -> None:
    client = rewardkit.ChatClient(base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(ValueError, match="joint"):
        rewardkit.DualRefJudge(client, mode="both")  # type: ignore[arg-type]
