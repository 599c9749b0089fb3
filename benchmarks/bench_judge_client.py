"""Judge transport throughput: requests/s of the old urllib transport vs the pooled openai SDK one.

A local HTTP/1.1 keep-alive server (``http.server.ThreadingHTTPServer`` on loopback, in its own
process) answers every ``POST /v1/chat/completions`` with the same small chat completion. The
same ``N`` requests (distinct prompts, at the same concurrency) go through

* **baseline**: what ``ChatClient`` did before, a ``urllib`` POST per request with a new TCP
  connection each time (``urllib`` always sends ``Connection: close``), behind the same kind
  of semaphore and thread pool;
* **ChatClient**: the current client (one ``openai.OpenAI`` client, pooled keep-alive
  connections), cache disabled.

Both arms are warmed up first (SDK import and client creation are not timed), run alternately
for ``--rounds`` rounds in the same process, and the best round of each is reported with the
ratio ChatClient / baseline and the TCP connections the server accepted. The server sets
``TCP_NODELAY`` like real inference servers (``--nagle`` turns it off to show the 40 ms
delayed-ACK stall that ``http.server`` then causes on kept-alive connections). Loopback has no
network latency and no TLS, so the gain over a remote HTTPS API (a TCP + TLS handshake saved
per request) is larger than what this measures; ``--connect-ms`` adds a simulated cost to each
new connection to model it.

    OMP_NUM_THREADS=1 python benchmarks/bench_judge_client.py            # N=300, concurrency 4
    OMP_NUM_THREADS=1 python benchmarks/bench_judge_client.py --n 1000 --concurrency 8
    OMP_NUM_THREADS=1 python benchmarks/bench_judge_client.py --connect-ms 10   # simulated handshake
"""

import argparse
import json
import multiprocessing as mp
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rewardkit import ChatClient

ANSWER = json.dumps(
    {
        "id": "bench",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": '{"score": 7}'}, "finish_reason": "stop"}
        ],
    }
).encode("utf-8")
API_KEY = "sk-bench"


def _serve(port: Any, connections: Any, delay: float, connect_delay: float, nagle: bool) -> None:
    """Server process: answer ``ANSWER`` forever, counting accepted TCP connections."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # TCP_NODELAY, as uvicorn / asyncio servers (vLLM, SGLang) set it: without it
        # http.server's two writes (headers, then body) on a kept-alive connection wait for
        # the client's delayed ACK (~40 ms per request), a server artefact, not a client cost.
        disable_nagle_algorithm = not nagle

        def setup(self) -> None:  # once per accepted TCP connection
            super().setup()
            with connections.get_lock():
                connections.value += 1
            if connect_delay:  # simulated handshake cost (TCP + TLS round trips to a remote API)
                time.sleep(connect_delay)

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if delay:
                time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(ANSWER)))
            self.end_headers()
            self.wfile.write(ANSWER)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    port.value = httpd.server_address[1]
    httpd.serve_forever()


class Server:
    """Keep-alive loopback server in its own process (its CPU time does not share our GIL)."""

    def __init__(self, delay: float, connect_delay: float = 0.0, nagle: bool = False) -> None:
        ctx = mp.get_context("spawn")
        self._port = ctx.Value("i", 0)
        self._connections = ctx.Value("i", 0)
        self.process = ctx.Process(
            target=_serve, args=(self._port, self._connections, delay, connect_delay, nagle), daemon=True
        )
        self.process.start()
        deadline = time.monotonic() + 60.0
        while not self._port.value:
            if time.monotonic() > deadline or not self.process.is_alive():
                raise RuntimeError("the benchmark server did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self._port.value}/v1"

    @property
    def connections(self) -> int:
        return int(self._connections.value)

    def close(self) -> None:
        self.process.terminate()
        self.process.join(10.0)


def urllib_baseline(url: str, concurrency: int) -> Callable[[Sequence[str]], list[str]]:
    """The old transport: one urllib POST, hence one new connection, per request."""
    endpoint = f"{url}/chat/completions"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    gate = threading.BoundedSemaphore(concurrency)
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Authorization": f"Bearer {API_KEY}",
    }

    def one(prompt: str) -> str:
        body = {
            "model": "judge",
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0.0,
            "max_tokens": 64,
        }
        request = urllib.request.Request(
            endpoint, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        with gate, opener.open(request, timeout=30.0) as response:
            raw = response.read()
        return str(json.loads(raw)["choices"][0]["message"]["content"])

    def run(prompts: Sequence[str]) -> list[str]:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            return list(pool.map(one, prompts))

    return run


def chat_client(url: str, concurrency: int) -> Callable[[Sequence[str]], list[str]]:
    """The current ChatClient, cache off: one openai.OpenAI client with a connection pool."""
    client = ChatClient(
        base_url=url, model="judge", api_key=API_KEY, max_tokens=64, max_concurrency=concurrency
    )

    def run(prompts: Sequence[str]) -> list[str]:
        results = client.complete_many([[{"role": "user", "content": p}] for p in prompts], use_cache=False)
        return [r.content for r in results]  # type: ignore[union-attr]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=300, help="requests per round (default 300)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per arm (default 3)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="server latency per request (default 0)")
    parser.add_argument(
        "--connect-ms", type=float, default=0.0, help="simulated cost of each new connection (default 0)"
    )
    parser.add_argument("--nagle", action="store_true", help="leave Nagle on in the server (no TCP_NODELAY)")
    args = parser.parse_args()

    server = Server(args.delay_ms / 1000.0, args.connect_ms / 1000.0, nagle=args.nagle)
    arms = {
        "baseline (urllib, new connection per request)": urllib_baseline(server.url, args.concurrency),
        "ChatClient (openai SDK, pooled keep-alive)": chat_client(server.url, args.concurrency),
    }
    rates: dict[str, list[float]] = {name: [] for name in arms}
    connections: dict[str, int] = dict.fromkeys(arms, 0)
    try:
        warm_up = [f"warm-up {i}" for i in range(2 * args.concurrency)]
        for run in arms.values():  # imports, client creation, first connections: not timed
            assert run(warm_up) == ['{"score": 7}'] * len(warm_up)
        for r in range(args.rounds):
            for name, run in arms.items():
                prompts = [f"round {r} prompt {i}" for i in range(args.n)]
                before = server.connections
                start = time.perf_counter()
                answers = run(prompts)
                seconds = time.perf_counter() - start
                assert answers == ['{"score": 7}'] * args.n
                connections[name] = server.connections - before
                rates[name].append(args.n / seconds)
    finally:
        server.close()

    nodelay = "off" if args.nagle else "on"
    print(
        f"N={args.n} requests per round, concurrency {args.concurrency}, {args.rounds} rounds; server: "
        f"loopback HTTP/1.1 keep-alive in its own process, TCP_NODELAY {nodelay}, "
        f"{args.delay_ms:g} ms per request, {args.connect_ms:g} ms per new connection"
    )
    print(f"{'transport':48s} {'best req/s':>11s} {'median':>9s} {'new TCP conns/round':>20s}")
    for name in arms:
        best, median = max(rates[name]), statistics.median(rates[name])
        print(f"{name:48s} {best:11.1f} {median:9.1f} {connections[name]:20d}")
    base, new = (max(rates[name]) for name in arms)
    print(f"ratio ChatClient / baseline (best rounds): {new / base:.2f}x")


if __name__ == "__main__":
    main()
