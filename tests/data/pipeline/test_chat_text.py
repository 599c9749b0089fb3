import json

import pytest

import rewardkit
from rewardkit.data.pipeline.chat_text import ChatText, parse_scene, scene_request
from rewardkit.data.pipeline.steps import RecordPlan
from tests.rewards.judges.server import Reply, chat, serve

PLAN = RecordPlan(3, "subject_bg_style", 4, 12345, "train", 64)
GOOD = {
    "subjects": [
        {"name": "a red kite", "description": "a diamond kite"},
        {"name": "an old boot", "description": "x"},
    ],
    "scene_prompt": "a red kite and an old boot on a beach, watercolour",
    "background": "a windy beach",
    "style": "watercolour painting",
}


def _client(server, **kwargs):
    return rewardkit.ChatClient(base_url=server.url, model="writer", backoff=0.0, max_retries=1, **kwargs)


def test_the_request_names_the_seed_the_count_and_every_type() -> None:
    text = scene_request(PLAN)
    assert "#12345" in text and "exactly 2 objects" in text
    assert '"background"' in text and '"style"' in text and '"pose"' not in text


def test_parse_scene_reads_fenced_and_prose_wrapped_answers() -> None:
    wrapped = "Sure! Here it is:\n```json\n" + json.dumps(GOOD) + "\n```\nEnjoy."
    spec = parse_scene(wrapped, PLAN)
    assert [s.name for s in spec.subjects] == ["a red kite", "an old boot"]
    assert spec.background == "a windy beach" and spec.style == "watercolour painting" and spec.pose is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"subjects": GOOD["subjects"][:1]}, "expected 2 subjects, got 1"),
        ({"subjects": [{"name": "a kite"}, {"name": "A Kite"}]}, "repeated subject names"),
        ({"subjects": [{"name": ""}, {"name": "a boot"}]}, "without a name"),
        ({"style": ""}, "no style description"),
        ({"scene_prompt": None}, "no scene_prompt"),
    ],
)
def test_parse_scene_refuses_what_the_pipeline_cannot_use(change, reason) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_scene(json.dumps({**GOOD, **change}), PLAN)
    with pytest.raises(ValueError, match=r"JSON|object"):
        parse_scene("I cannot help with that.", PLAN)


def test_malformed_answers_are_asked_again_and_good_ones_cached(tmp_path) -> None:
    answers = iter([chat("no json here"), chat(json.dumps({**GOOD, "subjects": []})), chat(json.dumps(GOOD))])
    with serve(lambda body, n: next(answers)) as server:
        writer = ChatText(_client(server, cache_dir=tmp_path), attempts=3)
        spec = writer.scene(PLAN)
        assert spec.subjects[1].name == "an old boot" and len(server.requests) == 3
        assert server.requests[0]["messages"][1]["content"] == scene_request(PLAN)
        # A re-run (resume) is answered from the cache: the same scene, no new request.
        assert ChatText(_client(server, cache_dir=tmp_path)).scene(PLAN) == spec
        assert len(server.requests) == 3


def test_a_record_fails_with_the_last_reason_after_its_attempts() -> None:
    with serve(lambda body, n: chat(json.dumps({**GOOD, "background": None}))) as server:
        with pytest.raises(ValueError, match="after 2 answers: no background description"):
            ChatText(_client(server), attempts=2).scene(PLAN)
        assert len(server.requests) == 2
    with serve(lambda body, n: Reply(503, {"error": "busy"})) as server, pytest.raises(rewardkit.JudgeError):
        ChatText(_client(server)).scene(PLAN)
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        ChatText(attempts=0)
