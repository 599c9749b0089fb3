"""An OpenAI-compatible chat-completions client for MLLM judges, on the ``openai`` SDK.

The transport is one ``openai.OpenAI`` client per [`ChatClient`][rewardkit.ChatClient],
created on the first request and shared by every thread, so its HTTP connection pool keeps
connections alive across requests (no TCP/TLS handshake per image). The SDK's own retries are
off (``max_retries=0``): rewardkit keeps a single retry policy of its own. What it adds, for
scoring thousands of images with an MLLM judge:

* **retries** with exponential backoff and jitter on HTTP 408 / 409 / 429 / 5xx, timeouts,
  dropped connections and empty or malformed answers (``Retry-After`` and ``retry-after-ms``
  are honoured, capped at ``backoff_max``);
* a **concurrency limit** shared by every thread using the client;
* a per-attempt **timeout**;
* an **on-disk cache** keyed by the SHA-256 of the request body (model, messages, sampling
  parameters), so rerunning an evaluation does not pay twice;
* per-slot failures in ``complete_many`` (a failed request does not sink the batch);
* the **API key is never logged** nor shown in ``repr`` or error messages.

The ``openai`` package (``pip install 'rewardkit[rewards]'``) is imported on the first request
that is not a cache hit, never when ``rewardkit`` is imported.

Base URL, key and model come from the arguments or from the environment:
``REWARDKIT_JUDGE_BASE_URL`` / ``OPENAI_BASE_URL``, ``REWARDKIT_JUDGE_API_KEY`` /
``OPENAI_API_KEY`` and ``REWARDKIT_JUDGE_MODEL``.
"""

import email.utils
import hashlib
import json
import logging
import math
import os
import random
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:  # the SDK itself is imported on the first request
    from openai import OpenAI

__all__ = [
    "ChatClient",
    "ChatClientConfig",
    "ChatResult",
    "JudgeError",
    "JudgeHTTPError",
    "JudgeTimeoutError",
    "Messages",
]

logger = logging.getLogger("rewardkit.judges")

#: OpenAI chat messages: ``[{"role": "system" | "user" | ..., "content": str | [parts]}]``.
Messages: TypeAlias = Sequence[Mapping[str, Any]]

_ENV_BASE_URL = ("REWARDKIT_JUDGE_BASE_URL", "OPENAI_BASE_URL")
_ENV_API_KEY = ("REWARDKIT_JUDGE_API_KEY", "OPENAI_API_KEY")
_ENV_MODEL = ("REWARDKIT_JUDGE_MODEL",)
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
#: Statuses worth another attempt: request timeout, conflict (lock), rate limit, server errors.
_RETRY_STATUSES = frozenset({408, 409, 429})
_NO_KEY = "no-key"  # placeholder for the SDK's constructor; the Authorization header is omitted
_INSTALL_HINT = "pip install 'rewardkit[rewards]'"


class JudgeError(RuntimeError):
    """A judge request failed for good (after retries, or with a non-retryable status)."""


class JudgeHTTPError(JudgeError):
    """The server answered with an HTTP error status.

    Attributes:
        status: the HTTP status code.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class JudgeTimeoutError(JudgeError):
    """Every attempt timed out."""


class _RetryableError(Exception):
    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        timeout: bool = False,
        status: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.timeout = timeout
        self.status = status


@dataclass(frozen=True)
class ChatClientConfig:
    r"""Settings of a [`ChatClient`][rewardkit.ChatClient].

    Attributes:
        model: model name sent to the server (env ``REWARDKIT_JUDGE_MODEL``).
        base_url: e.g. ``"https://api.openai.com/v1"`` or ``"http://127.0.0.1:8000/v1"``; the
            client POSTs to ``{base_url}/chat/completions`` (env ``REWARDKIT_JUDGE_BASE_URL``,
            then ``OPENAI_BASE_URL``).
        api_key: bearer token (env ``REWARDKIT_JUDGE_API_KEY``, then ``OPENAI_API_KEY``);
            ``None`` sends no ``Authorization`` header (local servers). Never logged.
        timeout: seconds per attempt (connect and each read).
        max_retries: retries after the first attempt (so ``max_retries + 1`` attempts); the
            SDK's own retries are off, this is the only retry policy.
        backoff: base delay in seconds; attempt $a$ waits about
            $\min(b_{\max}, b\,2^{a})$ times a jitter factor in [0.5, 1].
        backoff_max: cap of a single delay (also caps ``Retry-After`` / ``retry-after-ms``).
        max_concurrency: requests in flight at once, across all threads using the client.
        cache_dir: directory of the response cache; ``None`` disables it.
        temperature: sampling temperature (0 for reproducible judging; OmniRef's script
            used 0.9).
        max_tokens: completion token limit (``None`` omits it).
        extra_body: extra JSON fields merged into every request body (e.g.
            ``{"thinking_level": "low"}``).
    """

    model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    max_retries: int = 4
    backoff: float = 1.0
    backoff_max: float = 30.0
    max_concurrency: int = 4
    cache_dir: str | Path | None = None
    temperature: float = 0.0
    max_tokens: int | None = 2048
    extra_body: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout}")
        if (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or self.max_retries < 0
        ):
            raise ValueError(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        if self.backoff < 0 or self.backoff_max < 0:
            raise ValueError(f"backoff and backoff_max must be >= 0, got {self.backoff}, {self.backoff_max}")
        if (
            isinstance(self.max_concurrency, bool)
            or not isinstance(self.max_concurrency, int)
            or self.max_concurrency < 1
        ):
            raise ValueError(f"max_concurrency must be an int >= 1, got {self.max_concurrency!r}")


@dataclass(frozen=True)
class ChatResult:
    """One answer.

    Attributes:
        content: the assistant message text.
        cached: served from the on-disk cache.
        attempts: HTTP attempts made (0 for a cache hit).
    """

    content: str
    cached: bool
    attempts: int


def _from_env(names: Sequence[str]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _content_text(content: object) -> str | None:
    """The text of a message ``content``: a string, or a list of ``{"type": "text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text"]
        return "".join(str(t) for t in texts) if texts else None
    return None


def _import_openai() -> ModuleType:
    """The ``openai`` module, or an ImportError that says how to install it."""
    try:
        import openai
    except ImportError as err:
        raise ImportError(
            "the judge client sends its requests with the openai SDK, which is not installed: "
            f"{_INSTALL_HINT} (or pip install 'openai>=1.40')"
        ) from err
    return openai


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds asked for by ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if not headers:
        return None
    seconds: float | None = None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            seconds = float(millis) / 1000.0
        except ValueError:
            seconds = None
    value = headers.get("retry-after")
    if seconds is None and value is not None:
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                return None
            seconds = when.timestamp() - time.time()
    if seconds is None or not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _reason(err: BaseException) -> str:
    """A short description of a transport error: the underlying exception if there is one."""
    cause = err.__cause__
    if cause is not None and str(cause):
        return f"{type(cause).__name__}: {cause}"
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


class ChatClient:
    """OpenAI-compatible ``/chat/completions`` client with retries, cache and a concurrency cap.

    Args:
        config: settings; keyword ``overrides`` replace its fields.
        **overrides: any [`ChatClientConfig`][rewardkit.ChatClientConfig] field.

    Raises:
        ValueError: no base URL or model in the arguments or the environment.

    Example:
        >>> client = ChatClient(base_url="http://127.0.0.1:9/v1", model="judge", api_key="sk-secret")
        >>> "sk-secret" in repr(client)
        False
    """

    def __init__(self, config: ChatClientConfig | None = None, **overrides: Any) -> None:
        cfg = replace(config if config is not None else ChatClientConfig(), **overrides)
        base_url = cfg.base_url or _from_env(_ENV_BASE_URL)
        if not base_url:
            raise ValueError(
                "no judge base URL: pass base_url= (e.g. 'https://api.openai.com/v1') or set "
                "REWARDKIT_JUDGE_BASE_URL / OPENAI_BASE_URL"
            )
        model = cfg.model or _from_env(_ENV_MODEL)
        if not model:
            raise ValueError("no judge model: pass model= (e.g. 'gpt-4o') or set REWARDKIT_JUDGE_MODEL")
        parsed = urllib.parse.urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.config = replace(cfg, base_url=base_url.rstrip("/"), model=model)
        self._api_key = cfg.api_key or _from_env(_ENV_API_KEY)
        self.endpoint = f"{self.config.base_url}/chat/completions"
        self._gate = threading.BoundedSemaphore(cfg.max_concurrency)
        self._lock = threading.Lock()
        self._rng = random.Random()
        self.requests_sent = 0
        self.cache_hits = 0
        self._loopback = parsed.hostname in _LOOPBACK
        # One SDK client (and so one connection pool) per ChatClient, made on the first request.
        self._sdk_client: OpenAI | None = None
        self._sdk_pid = 0  # a forked child must not share its parent's sockets
        self._sdk_lock = threading.Lock()

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return (
            f"ChatClient(endpoint={self.endpoint!r}, model={self.config.model!r}, api_key=<{key}>, "
            f"timeout={self.config.timeout}, max_retries={self.config.max_retries}, "
            f"max_concurrency={self.config.max_concurrency}, cache_dir={self.config.cache_dir!r})"
        )

    def close(self) -> None:
        """Close the pooled connections (a later request opens new ones)."""
        with self._sdk_lock:
            sdk, self._sdk_client = self._sdk_client, None
        if sdk is not None:
            sdk.close()

    # ------------------------------------------------------------------ request / cache

    def request_body(self, messages: Messages, **params: Any) -> dict[str, Any]:
        """The JSON body for ``messages``; ``params`` override temperature, max_tokens, etc."""
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [dict(m) for m in messages],
            "temperature": self.config.temperature,
        }
        if self.config.max_tokens is not None:
            body["max_tokens"] = self.config.max_tokens
        body.update(self.config.extra_body)
        body.update(params)
        return body

    @staticmethod
    def cache_key(body: Mapping[str, Any]) -> str:
        """SHA-256 hex digest of the canonical JSON of a request body (the key is not part of it)."""
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def _cache_path(self, key: str) -> Path | None:
        if self.config.cache_dir is None:
            return None
        return Path(self.config.cache_dir).expanduser() / key[:2] / f"{key}.json"

    def _cache_get(self, key: str) -> str | None:
        path = self._cache_path(key)
        if path is None or not path.is_file():
            return None
        try:
            content = json.loads(path.read_text(encoding="utf-8"))["content"]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a corrupt entry is refetched and overwritten
        return content if isinstance(content, str) else None

    def _cache_put(self, key: str, content: str) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"key": key, "model": self.config.model, "created": time.time(), "content": content}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record, handle, ensure_ascii=False)
            os.replace(tmp, path)  # atomic: concurrent writers never leave half a file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def forget(self, messages: Messages, **params: Any) -> bool:
        """Drop the cached answer of a request (e.g. one that could not be parsed).

        Returns:
            Whether an entry was removed.
        """
        path = self._cache_path(self.cache_key(self.request_body(messages, **params)))
        if path is None or not path.is_file():
            return False
        path.unlink(missing_ok=True)
        return True

    # ------------------------------------------------------------------ HTTP

    def _sdk(self) -> "OpenAI":
        """The shared ``openai.OpenAI`` client, created once (thread-safe) on the first request."""
        sdk = self._sdk_client
        if sdk is not None and self._sdk_pid == os.getpid():
            return sdk
        with self._sdk_lock:
            if self._sdk_client is None or self._sdk_pid != os.getpid():
                openai = _import_openai()
                self._sdk_client = openai.OpenAI(
                    base_url=self.config.base_url,
                    api_key=self._api_key or _NO_KEY,
                    max_retries=0,  # rewardkit's loop in complete() is the only retry policy
                    timeout=self.config.timeout,
                    # never route loopback traffic through a proxy from the environment
                    http_client=openai.DefaultHttpxClient(trust_env=False) if self._loopback else None,
                )
                self._sdk_pid = os.getpid()
            return self._sdk_client

    def _attempt(self, body: Mapping[str, Any]) -> str:
        sdk = self._sdk()
        openai = _import_openai()  # already loaded by _sdk(): a dictionary lookup
        # no key: send no Authorization header at all (local servers)
        headers: dict[str, Any] = {} if self._api_key else {"Authorization": openai.Omit()}
        try:
            with self._gate:
                raw = sdk.post("/chat/completions", body=body, cast_to=bytes, options={"headers": headers})
        except openai.APIStatusError as err:
            status = err.status_code
            if status in _RETRY_STATUSES or status >= 500:
                seconds = _retry_after(err.response.headers)
                raise _RetryableError(f"HTTP {status}", retry_after=seconds, status=status) from err
            try:
                detail = err.response.text[:300]
            except Exception:  # the body could not be read or decoded
                detail = ""
            raise JudgeHTTPError(
                f"judge request to {self.endpoint} failed: HTTP {status}: {detail}", status
            ) from err
        except openai.APITimeoutError as err:
            raise _RetryableError("timeout", timeout=True) from err
        except openai.APIConnectionError as err:
            raise _RetryableError(f"connection error: {_reason(err)}") from err
        except openai.APIResponseValidationError as err:
            raise _RetryableError("malformed response (not an OpenAI chat completion)") from err
        try:
            data = json.loads(raw)
            message = data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise _RetryableError("malformed response body (not an OpenAI chat completion)") from err
        text = _content_text(message.get("content") if isinstance(message, Mapping) else None)
        if text is None or not text.strip():
            raise _RetryableError("empty answer (content is null)")
        return text

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.config.backoff_max)
        base = min(self.config.backoff_max, self.config.backoff * 2.0**attempt)
        return base * (0.5 + 0.5 * self._rng.random())

    def complete(self, messages: Messages, *, use_cache: bool = True, **params: Any) -> ChatResult:
        """Send one chat request (or answer it from the cache).

        Args:
            messages: OpenAI chat messages.
            use_cache: read and write the cache (when ``cache_dir`` is set).
            **params: body fields overriding the config (``temperature``, ``max_tokens``...).

        Returns:
            The [`ChatResult`][rewardkit.ChatResult].

        Raises:
            JudgeHTTPError: a non-retryable status (4xx other than 408/409/429), or a retryable
                one on every attempt.
            JudgeTimeoutError: every attempt timed out.
            JudgeError: other persistent failures (connection, malformed or empty answers).
            ImportError: the ``openai`` SDK is not installed (``pip install 'rewardkit[rewards]'``).
        """
        body = self.request_body(messages, **params)
        key = self.cache_key(body)
        if use_cache:
            hit = self._cache_get(key)
            if hit is not None:
                with self._lock:
                    self.cache_hits += 1
                return ChatResult(hit, cached=True, attempts=0)
        last: _RetryableError | None = None
        attempts = self.config.max_retries + 1
        for attempt in range(attempts):
            with self._lock:
                self.requests_sent += 1
            try:
                content = self._attempt(body)
            except _RetryableError as err:
                last = err
                if attempt + 1 < attempts:
                    delay = self._delay(attempt, err.retry_after)
                    logger.warning(
                        "judge request to %s: %s (attempt %d/%d); retrying in %.2fs",
                        self.endpoint, err, attempt + 1, attempts, delay,
                    )  # fmt: skip
                    time.sleep(delay)
                continue
            if use_cache:
                self._cache_put(key, content)
            return ChatResult(content, cached=False, attempts=attempt + 1)
        assert last is not None
        message = f"judge request to {self.endpoint} failed after {attempts} attempt(s): {last}"
        if last.timeout:
            raise JudgeTimeoutError(f"{message} (timeout {self.config.timeout}s per attempt)")
        if last.status is not None:
            raise JudgeHTTPError(message, last.status)
        raise JudgeError(message)

    def complete_many(
        self, requests: Sequence[Messages], *, use_cache: bool = True, **params: Any
    ) -> list[ChatResult | JudgeError]:
        """Send many requests concurrently (at most ``max_concurrency`` in flight).

        Failures do not abort the batch: the failed entries hold the
        [`JudgeError`][rewardkit.JudgeError] instead of a result, in input order.
        """
        if not requests:
            return []

        def one(messages: Messages) -> ChatResult | JudgeError:
            try:
                return self.complete(messages, use_cache=use_cache, **params)
            except JudgeError as err:
                logger.error("%s", err)
                return err

        workers = min(self.config.max_concurrency, len(requests))
        if workers == 1:
            return [one(m) for m in requests]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rewardkit-judge") as pool:
            return list(pool.map(one, requests))
