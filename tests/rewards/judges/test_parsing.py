import json
import math

import hypothesis.strategies as st
import pytest
from hypothesis import given

from rewardkit.rewards.judges import (
    JudgeParseError,
    coerce_score,
    parse_json_object,
    parse_yes_no,
    scores_by_regex,
)

KEYS = st.text(st.characters(categories=["L", "N"]) | st.sampled_from("_ -'"), min_size=1, max_size=12)
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.floats(-1e6, 1e6, allow_nan=False)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
OBJECTS = st.dictionaries(KEYS, VALUES, min_size=1, max_size=5)
PREFIX = st.sampled_from(["", "Sure! Here is my evaluation:\n", "Analysis: the image is nice.\n\n", "   "])
SUFFIX = st.sampled_from(["", "\nHope this helps.", "\n\nNote: scores are subjective (0-10).", " "])


@given(OBJECTS, PREFIX, SUFFIX, st.booleans(), st.booleans())
def test_recovers_any_json_object_from_chatty_answers(obj, prefix, suffix, fenced, pretty) -> None:
    body = json.dumps(obj, indent=2 if pretty else None, ensure_ascii=False)
    if fenced:
        body = f"```json\n{body}\n```"
    assert parse_json_object(prefix + body + suffix) == obj


@given(st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True),
                       st.integers(-5, 10) | st.booleans() | st.none() | st.from_regex(r"[a-z ]{0,8}", fullmatch=True),
                       min_size=1, max_size=5))  # fmt: skip
def test_recovers_python_literal_dicts(obj) -> None:
    assert parse_json_object(f"Result: {obj!r}") == obj  # single quotes, True/None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1, "b": [1, 2,],}', {"a": 1, "b": [1, 2]}),  # trailing commas
        ("{'a': 'it\\'s', \"b\": true}", {"a": "it's", "b": True}),  # mixed quotes
        ("{a: 1, b_c: 'x'}", {"a": 1, "b_c": "x"}),  # bare keys
        ("{“score”: 8}", {"score": 8}),  # smart quotes
        ('{"note": "use {braces} and }", "s": 2} trailing {junk}', {"note": "use {braces} and }", "s": 2}),
        (
            'It\'s fine. {"s": {"score": 8, "reasoning": "it\'s ok"}',
            {"s": {"score": 8, "reasoning": "it's ok"}},
        ),
        (
            '{"text_adherence": {"score": 8, "reasoning": "cut off',
            {"text_adherence": {"score": 8, "reasoning": "cut off"}},
        ),
        ('not this {oops} but ```json\n{"x": NaN}\n```', {"x": math.nan}),
    ],
    ids=[
        "trailing-comma",
        "mixed-quotes",
        "bare-keys",
        "smart-quotes",
        "braces-in-strings",
        "apostrophes",
        "truncated",
        "fence-wins",
    ],
)
def test_imperfect_json(text, expected) -> None:
    got = parse_json_object(text)
    if expected == {"x": math.nan}:
        assert math.isnan(got["x"])
    else:
        assert got == expected


@pytest.mark.parametrize("text", ["", "no json here", "[1, 2, 3]", "{{{{", "score: 8"])
def test_no_object_raises_with_a_snippet(text) -> None:
    with pytest.raises(JudgeParseError, match="no JSON object"):
        parse_json_object(text)


def test_coerce_score() -> None:
    assert (
        coerce_score(7) == 7.0
        and coerce_score("8/10") == 8.0
        and coerce_score({"score": "6.5 points"}) == 6.5
    )
    assert coerce_score(-1) is None and coerce_score(-1, lo=-1, hi=-1) == -1.0
    assert coerce_score(10.5) is None and coerce_score(True) is None and coerce_score(float("nan")) is None
    assert coerce_score("N/A") is None and coerce_score([8]) is None


@given(st.floats(0, 10))
def test_coerce_score_accepts_every_in_range_number(x) -> None:
    assert coerce_score(x) == x and coerce_score({"score": x}) == x


def test_parse_yes_no() -> None:
    assert [parse_yes_no(v) for v in ("Yes.", "**no**", " YES, because", "No - missing", True, 0, {"answer": "y"})] == [
        True, False, True, False, True, False, True,
    ]  # fmt: skip
    assert (
        parse_yes_no("maybe") is None
        and parse_yes_no({"explanation": "x"}) is None
        and parse_yes_no(2) is None
    )


def test_scores_by_regex_recovers_broken_verdicts() -> None:
    text = (
        'text_adherence: {"score": 7, reasoning: "ok"} ... "style_consistency": -1, aesthetic_quality = 8.5'
    )
    found = scores_by_regex(
        text, ("text_adherence", "style_consistency", "aesthetic_quality", "lighting_consistency")
    )
    assert found == {"text_adherence": 7.0, "style_consistency": -1.0, "aesthetic_quality": 8.5}
