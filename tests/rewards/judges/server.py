"""A real OpenAI-compatible HTTP server on loopback for the judge tests (no mock objects).

The server runs ``http.server.ThreadingHTTPServer`` in a thread on ``127.0.0.1`` with an
ephemeral port. A *responder* decides each answer from the request body and the request
count, so tests can script canned, malformed, slow and failing (429/5xx) answers. With
``keep_alive=True`` it speaks HTTP/1.1 and keeps connections open, and ``connections`` counts
the TCP connections it accepted (to check that the client reuses them).
"""

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer: HTTP status, body (dict → JSON, str → raw), headers, delay."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def chat(content: str | None) -> Reply:
    """A 200 answer shaped like an OpenAI chat completion whose message is ``content``."""
    return Reply(
        200,
        {
            "id": "x",
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
        },
    )


Responder = Callable[[dict[str, Any], int], Reply]


class JudgeServer:
    """Loopback server; ``requests`` holds every received body, ``headers`` every header set.

    Header sets are ``email.message.Message`` objects: lookups ignore case, as HTTP does
    (``headers[0]["Authorization"]`` finds ``authorization: Bearer ...``).
    """

    def __init__(self, responder: Responder, *, keep_alive: bool = False) -> None:
        self.responder = responder
        self.connections = 0
        self.requests: list[dict[str, Any]] = []
        self.headers: list[Message] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"
            disable_nagle_algorithm = True  # else kept-alive replies wait ~40 ms for a delayed ACK

            def setup(self) -> None:  # once per accepted TCP connection
                super().setup()
                with server._lock:
                    server.connections += 1

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.headers.append(self.headers)
                    count = len(server.requests)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = server.responder(body, count)
                    if reply.delay:
                        time.sleep(reply.delay)
                    payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                    data = payload.encode("utf-8")
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)
                finally:
                    with server._lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def count(self) -> int:
        return len(self.requests)


@contextmanager
def serve(responder: Responder, *, keep_alive: bool = False) -> Iterator[JudgeServer]:
    """Run a JudgeServer for the duration of the ``with`` block."""
    server = JudgeServer(responder, keep_alive=keep_alive)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def prompt_text(body: dict[str, Any]) -> str:
    """All text of a request's messages, concatenated."""
    parts: list[str] = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(p.get("text", "") for p in content if p.get("type") == "text")
    return "\n".join(parts)


def n_images(body: dict[str, Any]) -> int:
    """Number of image parts in a request."""
    return sum(
        1
        for m in body.get("messages", [])
        if not isinstance(m.get("content"), str)
        for p in m["content"]
        if p.get("type") == "image_url"
    )


def smart_answer(body: dict[str, Any], count: int) -> Reply:
    """A well-behaved judge: recognises which rubric it was sent and answers it validly."""
    text = prompt_text(body)
    if "six independent dimensions" in text:
        verdict = {
            "text_adherence": {"score": 8, "reasoning": "ok"},
            "subject_consistency": {"score": 7.5, "reasoning": "ok"},
            "style_consistency": {"score": 6, "reasoning": "ok"},
            "lighting_consistency": {"score": -1, "reasoning": "N/A"},
            "background_consistency": {"score": 9, "reasoning": "ok"},
            "aesthetic_quality": {"score": 8.5, "reasoning": "ok"},
        }
        return chat(json.dumps(verdict))
    if "Questions:" in text:
        return chat(json.dumps({
            "instruction_following": {"answer": "yes", "explanation": "."},
            "reference_consistency": {"answer": "no", "explanation": "."},
            "realism": {"answer": "yes", "explanation": "."},
        }))  # fmt: skip
    if "Question:" in text:
        return chat('{"answer": "yes", "explanation": "fine"}')
    if "prompt_following" in text:
        return chat('{"prompt_following": 9, "subject_resemblance": 4, "explanation": "."}')
    if "naturalness" in text:
        return chat('{"naturalness": 8, "artifacts": 8, "explanation": "."}')
    if "source element" in text:
        return chat('{"answer": "yes", "explanation": "present"}')
    return Reply(400, {"error": {"message": "unrecognised request"}})
