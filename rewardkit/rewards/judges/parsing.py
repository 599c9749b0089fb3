"""Tolerant parsing of what MLLM judges actually return.

Models asked for "strictly valid JSON" still wrap it in Markdown fences, prepend "Sure! Here
is...", append explanations, use single quotes or Python literals, leave trailing commas,
quote numbers ("8/10"), or get cut off by the token limit. ``parse_json_object`` recovers the
first JSON object from all of these; ``coerce_score`` and ``parse_yes_no`` read the values.
"""

import ast
import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "JudgeParseError",
    "coerce_score",
    "parse_json_object",
    "parse_yes_no",
    "scores_by_regex",
]


class JudgeParseError(ValueError):
    """The judge's answer holds no recoverable JSON object (or not the expected fields)."""


_FENCE = re.compile(r"```[ \t]*(?:json|JSON|javascript|js|python)?[ \t]*\n?(.*?)```", re.DOTALL)
_SMART = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_\- ]*?)(\s*:)")
_CLOSE = {"{": "}", "[": "]"}


class _Strings:
    """Whether a left-to-right scan is inside a quoted string (backslash escapes honoured)."""

    def __init__(self) -> None:
        self.quote: str | None = None
        self._escaped = False

    def consumes(self, ch: str) -> bool:
        """Feed the next character; True if it belongs to an open string (its closing quote too)."""
        if self.quote is None:
            return False
        if self._escaped:
            self._escaped = False
        elif ch == "\\":
            self._escaped = True
        elif ch == self.quote:
            self.quote = None
        return True


def _balanced_objects(text: str) -> Iterator[str]:
    """Yield candidate ``{...}`` substrings in order of their opening brace.

    A string-aware scanner (double and single quotes, backslash escapes) finds the matching
    closing brace; an object cut off at the end of the text is closed (open string, arrays
    and objects) so truncated answers still parse.
    """
    start = text.find("{")
    while start != -1:
        stack: list[str] = []
        strings = _Strings()
        end = None
        for pos in range(start, len(text)):
            ch = text[pos]
            if strings.consumes(ch):
                continue
            if ch in "\"'":
                # an apostrophe inside a bare word (it's) is not a quote
                if (
                    ch == "'"
                    and pos > 0
                    and text[pos - 1].isalnum()
                    and pos + 1 < len(text)
                    and text[pos + 1].isalnum()
                ):
                    continue
                strings.quote = ch
            elif ch in _CLOSE:
                stack.append(_CLOSE[ch])
            elif ch in "}]":
                if stack and stack[-1] == ch:
                    stack.pop()
                if not stack:
                    end = pos
                    break
        if end is not None:
            yield text[start : end + 1]
        else:  # truncated: close what is open
            tail = text[start:].rstrip().rstrip(",")
            if strings.quote is not None:
                tail += strings.quote
            yield tail + "".join(reversed(stack))
            return
        start = text.find("{", start + 1)


def _python_literals(text: str) -> str:
    """Replace bare ``true``/``false``/``null`` (outside strings) with Python literals."""
    out: list[str] = []
    strings = _Strings()
    i = 0
    while i < len(text):
        ch = text[i]
        if strings.consumes(ch):
            out.append(ch)
            i += 1
            continue
        if ch in "\"'":
            strings.quote = ch
            out.append(ch)
            i += 1
            continue
        for word, repl in (("true", "True"), ("false", "False"), ("null", "None"), ("NaN", "float('nan')")):
            if text.startswith(word, i) and not (i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")):
                after = i + len(word)
                if after >= len(text) or not (text[after].isalnum() or text[after] == "_"):
                    out.append(repl)
                    i = after
                    break
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _literal_eval(text: str) -> Any:
    # ast.literal_eval cannot call float('nan'); map it through a placeholder name
    tree = ast.parse(text.replace("float('nan')", "__nan__"), mode="eval")

    def convert(node: ast.AST) -> Any:
        if isinstance(node, ast.Name) and node.id == "__nan__":
            return math.nan
        if isinstance(node, ast.Dict):
            return {
                convert(k): convert(v) for k, v in zip(node.keys, node.values, strict=True) if k is not None
            }
        if isinstance(node, ast.List | ast.Tuple):
            return [convert(e) for e in node.elts]
        return ast.literal_eval(node)

    return convert(tree.body)


def _attempts(candidate: str) -> Iterator[str]:
    yield candidate
    fixed = _TRAILING_COMMA.sub(r"\1", candidate.translate(_SMART))
    yield fixed
    yield _BARE_KEY.sub(lambda m: f'{m.group(1)}"{m.group(2).strip()}"{m.group(3)}', fixed)


def _load(candidate: str) -> dict[str, Any] | None:
    for text in _attempts(candidate):
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = _literal_eval(_python_literals(text))
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
    return None


def parse_json_object(text: str) -> dict[str, Any]:
    r"""Extract the first JSON object from a model's free-form answer.

    Tries, in order: the contents of Markdown code fences, then every balanced ``{...}`` in
    the text; each candidate is read as strict JSON, then with smart quotes straightened and
    trailing commas removed, then with bare keys quoted, each also as a Python literal
    (single quotes, ``True``/``None``). A candidate cut off by the token limit is closed first.

    Args:
        text: the assistant message.

    Returns:
        The first candidate that parses to a dict.

    Raises:
        JudgeParseError: nothing parses to a dict (the message quotes the start of the text).

    Example:
        >>> parse_json_object("Sure!\n```json\n{'score': 8, 'ok': true,}\n```\nHope this helps.")
        {'score': 8, 'ok': True}
    """
    if not isinstance(text, str):
        raise JudgeParseError(f"expected the answer text as str, got {type(text).__name__}")
    sources = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for source in sources:
        for candidate in _balanced_objects(source):
            parsed = _load(candidate)
            if parsed is not None:
                return parsed
    snippet = text.strip().replace("\n", " ")[:160]
    raise JudgeParseError(f"no JSON object found in the judge's answer: {snippet!r}")


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def coerce_score(value: object, *, lo: float = 0.0, hi: float = 10.0) -> float | None:
    """Read a score from a JSON value; values outside ``[lo, hi]`` are invalid.

    Accepts a number, a numeric string ("8", "8/10", "7.5 points") or an object with a
    ``score`` field.

    Args:
        value: the JSON value.
        lo: smallest valid score.
        hi: largest valid score.

    Returns:
        The score, or ``None`` if it is missing, not numeric, NaN or out of range.

    Example:
        >>> coerce_score({"score": "8/10"}), coerce_score(11), coerce_score("n/a")
        (8.0, None, None)
    """
    if isinstance(value, Mapping):
        value = value.get("score")
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        match = _NUMBER.search(value)
        if match is None:
            return None
        number = float(match.group(0))
    else:
        return None
    if math.isnan(number) or not lo <= number <= hi:
        return None
    return number


_YES = {"yes", "y", "true", "1", "是"}
_NO = {"no", "n", "false", "0", "否"}


def parse_yes_no(value: object) -> bool | None:
    """Read a yes/no answer: ``"Yes."``, ``"**no**"``, ``true``, ``1``, or ``{"answer": ...}``.

    Returns:
        ``True`` for yes, ``False`` for no, ``None`` when it is neither.

    Example:
        >>> parse_yes_no("**Yes**, clearly."), parse_yes_no({"answer": "no"}), parse_yes_no("maybe")
        (True, False, None)
    """
    if isinstance(value, Mapping):
        for key in ("answer", "verdict", "value", "result"):
            if key in value:
                return parse_yes_no(value[key])
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        words = re.findall(r"[a-z0-9]+|[是否]", value.lower())
        if words and words[0] in _YES:
            return True
        if words and words[0] in _NO:
            return False
    return None


def scores_by_regex(text: str, keys: tuple[str, ...]) -> dict[str, float]:
    """Last-resort recovery of ``"key": {"score": x}`` or ``"key": x`` pairs from broken JSON.

    Args:
        text: the answer.
        keys: field names to look for.

    Returns:
        ``{key: number}`` for the keys found (numbers may be negative, e.g. -1 for N/A).
    """
    found: dict[str, float] = {}
    for key in keys:
        k = re.escape(key)
        pattern = (
            rf"[\"']?{k}[\"']?\s*[:=]\s*(?:\{{[^{{}}]*?[\"']?score[\"']?\s*[:=]\s*)?[\"']?(-?\d+(?:\.\d+)?)"
        )
        match = re.search(pattern, text, flags=re.IGNORECASE | re.DOTALL)
        if match is not None:
            found[key] = float(match.group(1))
    return found
