"""The chat client against a real HTTP server on loopback: retries, timeouts, cache, concurrency."""

import logging

import pytest

from rewardkit import ChatClient, ChatClientConfig
from rewardkit.rewards import JudgeError, JudgeHTTPError, JudgeTimeoutError
from tests.rewards.judges.server import Reply, chat, serve

MESSAGES = [{"role": "user", "content": "Rate this."}]
SECRET = "sk-very-secret-4242"


def client(server, **overrides) -> ChatClient:
    options = {"base_url": server.url, "model": "judge", "api_key": SECRET, "backoff": 0.01, "backoff_max": 0.05,
               "max_retries": 3, "timeout": 5.0}  # fmt: skip
    options.update(overrides)
    return ChatClient(**options)


def test_canned_answer_and_request_shape() -> None:
    with serve(lambda body, n: chat('{"score": 7}')) as server:
        result = client(
            server, temperature=0.0, max_tokens=64, extra_body={"thinking_level": "low"}
        ).complete(MESSAGES)
    assert (result.content, result.cached, result.attempts) == ('{"score": 7}', False, 1)
    body = server.requests[0]
    assert body["model"] == "judge" and body["messages"] == MESSAGES
    assert (body["temperature"], body["max_tokens"], body["thinking_level"]) == (0.0, 64, "low")
    assert server.headers[0]["Authorization"] == f"Bearer {SECRET}"


def test_list_content_parts_are_joined() -> None:
    reply = chat(None)
    reply.body["choices"][0]["message"]["content"] = [
        {"type": "text", "text": "a"},
        {"type": "text", "text": "b"},
    ]
    with serve(lambda body, n: reply) as server:
        assert client(server).complete(MESSAGES).content == "ab"


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503])
def test_retries_on_429_and_5xx_then_succeeds(status) -> None:
    def responder(body, n):
        return Reply(status, {"error": "busy"}, {"Retry-After": "0"}) if n <= 2 else chat("ok")

    with serve(responder) as server:
        result = client(server).complete(MESSAGES)
    assert result.content == "ok" and result.attempts == 3 and server.count == 3


def test_persistent_5xx_gives_up_after_max_retries() -> None:
    with (
        serve(lambda body, n: Reply(500, {"error": "down"})) as server,
        pytest.raises(JudgeHTTPError, match="after 3 attempt") as info,
    ):
        client(server, max_retries=2).complete(MESSAGES)
    assert info.value.status == 500 and server.count == 3


def test_client_errors_are_not_retried() -> None:
    with (
        serve(lambda body, n: Reply(400, {"error": {"message": "bad model"}})) as server,
        pytest.raises(JudgeHTTPError, match=r"HTTP 400.*bad model") as info,
    ):
        client(server).complete(MESSAGES)
    assert info.value.status == 400 and server.count == 1


def test_slow_server_times_out_after_retries() -> None:
    with (
        serve(lambda body, n: Reply(200, {"choices": []}, delay=1.0)) as server,
        pytest.raises(JudgeTimeoutError, match=r"timeout 0\.2s"),
    ):
        client(server, timeout=0.2, max_retries=1).complete(MESSAGES)
    assert server.count == 2


def test_slow_then_fast_recovers() -> None:
    with serve(
        lambda body, n: Reply(200, chat("late").body, delay=1.0) if n == 1 else chat("fast")
    ) as server:
        assert client(server, timeout=0.3).complete(MESSAGES).content == "fast"


@pytest.mark.parametrize(
    "bad",
    [Reply(200, "this is not json"), Reply(200, {"unexpected": True}), chat(None), chat("   ")],
    ids=["not-json", "no-choices", "null-content", "blank-content"],
)
def test_malformed_or_empty_bodies_are_retried(bad) -> None:
    with serve(lambda body, n: bad if n == 1 else chat("fine")) as server:
        result = client(server).complete(MESSAGES)
    assert result.content == "fine" and result.attempts == 2


def test_connection_refused_is_a_judge_error() -> None:
    with serve(lambda body, n: chat("x")) as server:
        url = server.url
    with pytest.raises(JudgeError, match="connection error"):
        ChatClient(base_url=url, model="m", max_retries=1, backoff=0.0).complete(MESSAGES)


def test_cache_hit_on_rerun_and_forget(tmp_path) -> None:
    with serve(lambda body, n: chat(f"answer {n}")) as server:
        first = client(server, cache_dir=tmp_path).complete(MESSAGES)
        rerun_client = client(server, cache_dir=tmp_path)  # a fresh process would do the same
        second = rerun_client.complete(MESSAGES)
        assert server.count == 1 and second.cached and second.content == first.content == "answer 1"
        assert rerun_client.cache_hits == 1 and rerun_client.requests_sent == 0
        other = rerun_client.complete(MESSAGES, temperature=0.5)  # different request content -> miss
        assert not other.cached and server.count == 2
        assert rerun_client.forget(MESSAGES) and not rerun_client.forget(MESSAGES)
        assert rerun_client.complete(MESSAGES).content == "answer 3"
        assert client(server, cache_dir=tmp_path).complete(MESSAGES, use_cache=False).content == "answer 4"
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 2 and all(len(f.stem) == 64 for f in files)  # sha256 hex names
    assert all(SECRET not in f.read_text() for f in files)


def test_corrupt_cache_entry_is_refetched(tmp_path) -> None:
    with serve(lambda body, n: chat(f"v{n}")) as server:
        c = client(server, cache_dir=tmp_path)
        c.complete(MESSAGES)
        next(tmp_path.rglob("*.json")).write_text("{broken")
        assert c.complete(MESSAGES).content == "v2"


def test_concurrency_limit_is_respected() -> None:
    with serve(lambda body, n: Reply(200, chat("ok").body, delay=0.25)) as server:
        results = client(server, max_concurrency=2).complete_many([MESSAGES] * 6)
    assert [r.content for r in results] == ["ok"] * 6
    assert server.max_in_flight == 2


def test_complete_many_keeps_order_and_returns_failures() -> None:
    def responder(body, n):
        text = body["messages"][0]["content"]
        return Reply(404, {"error": "nope"}) if text == "fail" else chat(f"re: {text}")

    with serve(responder) as server:
        results = client(server, max_concurrency=3).complete_many(
            [[{"role": "user", "content": t}] for t in ("a", "fail", "c")]
        )
    assert results[0].content == "re: a" and results[2].content == "re: c"
    assert isinstance(results[1], JudgeHTTPError)


def test_key_never_appears_in_repr_logs_or_errors(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    with serve(lambda body, n: Reply(503, {"error": "x"})) as server:
        c = client(server, max_retries=1)
        with pytest.raises(JudgeHTTPError) as info:
            c.complete(MESSAGES)
    assert SECRET not in repr(c) and SECRET not in repr(c.config) and SECRET not in str(info.value)
    assert "retrying" in caplog.text and SECRET not in caplog.text


def test_settings_from_environment(monkeypatch) -> None:
    with serve(lambda body, n: chat("env")) as server:
        monkeypatch.setenv("REWARDKIT_JUDGE_BASE_URL", server.url)
        monkeypatch.setenv("REWARDKIT_JUDGE_MODEL", "env-model")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
        assert ChatClient().complete(MESSAGES).content == "env"
    assert server.requests[0]["model"] == "env-model"
    assert server.headers[0]["Authorization"] == "Bearer sk-from-env"


def test_missing_settings_say_what_to_pass(monkeypatch) -> None:
    for name in ("REWARDKIT_JUDGE_BASE_URL", "OPENAI_BASE_URL", "REWARDKIT_JUDGE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="base_url="):
        ChatClient(model="m")
    with pytest.raises(ValueError, match="model="):
        ChatClient(base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="http"):
        ChatClient(base_url="127.0.0.1:9", model="m")
    with pytest.raises(ValueError, match="max_concurrency"):
        ChatClientConfig(max_concurrency=0)
