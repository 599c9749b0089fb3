"""The judge client's transport (the openai SDK): one pooled connection, lazy import, headers."""

import email.utils
import logging
import subprocess
import sys
import time
import traceback

import pytest

from rewardkit import ChatClient
from rewardkit.rewards import JudgeError, JudgeHTTPError, JudgeTimeoutError
from rewardkit.rewards.judges.client import _retry_after
from tests.rewards.judges.server import Reply, chat, serve

MESSAGES = [{"role": "user", "content": "Rate this."}]
SECRET = "sk-very-secret-4242"


def client(server, **overrides) -> ChatClient:
    options = {"base_url": server.url, "model": "judge", "api_key": SECRET, "backoff": 0.01, "backoff_max": 0.05,
               "max_retries": 3, "timeout": 5.0}  # fmt: skip
    options.update(overrides)
    return ChatClient(**options)


def test_sequential_requests_reuse_one_connection() -> None:
    with serve(lambda body, n: chat(f"answer {n}"), keep_alive=True) as server:
        c = client(server)
        try:
            contents = [c.complete([{"role": "user", "content": f"q{i}"}]).content for i in range(20)]
        finally:
            c.close()
    assert contents == [f"answer {n}" for n in range(1, 21)]
    assert server.count == 20 and server.connections == 1


def test_concurrent_requests_use_at_most_max_concurrency_connections() -> None:
    with serve(lambda body, n: Reply(200, chat("ok").body, delay=0.02), keep_alive=True) as server:
        c = client(server, max_concurrency=4)
        try:
            batch = [[{"role": "user", "content": f"q{i}"}] for i in range(40)]
            first = c.complete_many(batch)
            second = c.complete_many(batch)  # a second batch reuses the same pool
        finally:
            c.close()
    assert [r.content for r in first + second] == ["ok"] * 80
    assert server.count == 80 and 1 <= server.connections <= 4 and server.max_in_flight <= 4


def test_retries_after_errors_keep_the_connection() -> None:
    def responder(body, n):
        return Reply(503, {"error": "busy"}, {"Retry-After": "0"}) if n % 2 else chat("ok")

    with serve(responder, keep_alive=True) as server:
        c = client(server)
        try:
            results = [c.complete([{"role": "user", "content": f"q{i}"}]) for i in range(5)]
        finally:
            c.close()
    assert all(r.content == "ok" and r.attempts == 2 for r in results)
    assert server.count == 10 and server.connections == 1


def test_close_then_a_new_request_opens_a_new_connection() -> None:
    with serve(lambda body, n: chat("ok"), keep_alive=True) as server:
        c = client(server)
        c.complete(MESSAGES)
        c.close()
        c.close()  # idempotent
        assert c.complete(MESSAGES, temperature=0.3).content == "ok"
        c.close()
    assert server.connections == 2


def test_request_body_is_exactly_rewardkits() -> None:
    with serve(lambda body, n: chat("x")) as server:
        client(server, max_tokens=None, extra_body={"top_p": 0.5}).complete(MESSAGES, seed=3)
    assert server.requests[0] == {
        "model": "judge", "messages": MESSAGES, "temperature": 0.0, "top_p": 0.5, "seed": 3,
    }  # fmt: skip
    assert server.headers[0]["Content-Type"] == "application/json"


def test_no_key_sends_no_authorization_header(monkeypatch) -> None:
    for name in ("REWARDKIT_JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with serve(lambda body, n: chat("x")) as server:
        ChatClient(base_url=server.url, model="m").complete(MESSAGES)
    assert server.headers[0]["Authorization"] is None


def test_retry_after_ms_is_honoured() -> None:
    def responder(body, n):
        return Reply(429, {"error": "slow down"}, {"retry-after-ms": "300"}) if n == 1 else chat("ok")

    with serve(responder) as server:
        start = time.perf_counter()
        result = client(server, backoff=0.0, backoff_max=5.0).complete(MESSAGES)
        elapsed = time.perf_counter() - start
    assert result.attempts == 2 and elapsed >= 0.3


def test_retry_after_is_capped_by_backoff_max() -> None:
    def responder(body, n):
        return Reply(503, {"error": "down"}, {"Retry-After": "120"}) if n == 1 else chat("ok")

    with serve(responder) as server:
        start = time.perf_counter()
        assert client(server, backoff_max=0.05).complete(MESSAGES).attempts == 2
    assert time.perf_counter() - start < 5.0


def test_retry_after_header_forms() -> None:
    assert _retry_after({"retry-after": "2"}) == 2.0
    assert _retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert _retry_after({"retry-after-ms": "junk", "retry-after": "4"}) == 4.0
    assert _retry_after({"retry-after": "-3"}) == 0.0
    assert _retry_after({"retry-after": "nan"}) is None
    assert _retry_after({"retry-after": "soon"}) is None
    assert _retry_after({}) is None and _retry_after(None) is None
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= _retry_after({"retry-after": when}) <= 31


def test_key_never_in_logs_or_error_chains_on_any_path(caplog) -> None:
    caplog.set_level(logging.DEBUG)  # the SDK's and the HTTP library's debug logs included
    errors: list[BaseException] = []
    with serve(lambda body, n: chat("ok") if n == 1 else Reply(401, {"error": "bad key"})) as server:
        c = client(server, max_retries=0)
        assert c.complete(MESSAGES).content == "ok"
        with pytest.raises(JudgeHTTPError) as info:
            c.complete(MESSAGES, temperature=1.0)
        errors.append(info.value)
        url = server.url
    with serve(lambda body, n: Reply(200, chat("late").body, delay=1.0)) as server:
        with pytest.raises(JudgeTimeoutError) as timeout:
            client(server, timeout=0.2, max_retries=0).complete(MESSAGES)
        errors.append(timeout.value)
    with pytest.raises(JudgeError, match="connection error") as refused:
        client(type("S", (), {"url": url}), max_retries=0).complete(MESSAGES)
    errors.append(refused.value)
    for err in errors:
        assert SECRET not in "".join(traceback.format_exception(err))
    assert "HTTP Request" in caplog.text or "HTTP Response" in caplog.text  # the SDK did log
    assert SECRET not in caplog.text and SECRET not in repr(c)


def test_missing_openai_says_how_to_install(monkeypatch, tmp_path) -> None:
    with serve(lambda body, n: chat("cached")) as server:
        client(server, cache_dir=tmp_path).complete(MESSAGES)
        monkeypatch.setitem(sys.modules, "openai", None)  # `import openai` now raises ImportError
        c = client(server, cache_dir=tmp_path)
        assert c.complete(MESSAGES).cached  # a cache hit needs no SDK
        with pytest.raises(ImportError, match=r"pip install 'rewardkit\[rewards\]'"):
            c.complete(MESSAGES, use_cache=False)
        with pytest.raises(ImportError, match="rewards"):
            c.complete_many([MESSAGES, MESSAGES], use_cache=False)
    assert server.count == 1


def test_openai_is_not_imported_before_the_first_request() -> None:
    code = (
        "import sys, rewardkit\n"
        "from rewardkit.rewards.judges import ChatClient\n"
        "c = ChatClient(base_url='http://127.0.0.1:9/v1', model='m')\n"
        "print('openai' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
