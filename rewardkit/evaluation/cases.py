r"""The two judge-only benchmarks of the seed papers: MICo-Bench-style and dual-reference cases.

Both are JSON lists (or JSONL files) of cases; paths are relative to the file's folder (or
``root``), and generated images are read as ``{index}.png`` like OmniRef-Bench's.

**MICo-Bench-style cases** (seed 004), scored with
[`WeightedRefVIEScore`][rewardkit.WeightedRefVIEScore] on 0–100:

```json
{"index": 0, "prompt": "The man from image 1 holds the mug of image 2 in the kitchen of image 3.",
 "sources": ["0/man.png", {"path": "0/mug.png", "name": "a blue mug"}, "0/kitchen.png"],
 "reference": "0/reference.png", "face_sources": [0], "category": "HOI", "type": "1P1O1S"}
```

``sources`` are the input images (a path, or ``{"path", "name", "is_face"}``),
``reference`` the human-verified reference result, ``face_sources`` the 0-based indices of
sources that are faces (scored with a face-embedding similarity instead of a VLM yes/no),
``category`` the reporting group (Object-Centric, Human-Centric, HOI, De&Re).
The benchmark score is the mean over cases; per group likewise.

**Dual-reference cases** (seed 003), scored with [`DualRefJudge`][rewardkit.DualRefJudge]'s
three yes/no questions, $r = \frac13(b_{\text{fid}} + b_{\text{cons}} + b_{\text{real}})$:

```json
{"index": 0, "prompt": "Put the dog of image 1 into the scene of image 2.",
 "inputs": ["0/dog.png", "0/scene.png"], "task": "animal"}
```

The score is the mean of $r$ over cases, reported per ``task`` and overall. A case whose
judge answers could not be read is left out of the means and counted under ``failures``.
"""

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

from rewardkit.evaluation.generation import GenerationItem

__all__ = [
    "CaseKind",
    "CaseScore",
    "CaseSet",
    "DualRefCase",
    "MicoCase",
    "Source",
    "cases_table",
    "detect_format",
    "load_cases",
    "plot_cases",
    "summarize_cases",
]

CaseKind: TypeAlias = Literal["mico", "dual_ref"]
BenchmarkFormat: TypeAlias = Literal["omniref", "mico", "dual_ref"]
#: Score scale of each kind (for tables and plots).
SCALES: Final[dict[str, float]] = {"mico": 100.0, "dual_ref": 1.0}
#: Per-case components reported for each kind (judge extras).
COMPONENTS: Final[dict[str, tuple[str, ...]]] = {
    "mico": ("W", "SC", "PQ", "subject_resemblance", "prompt_following", "naturalness", "artifacts"),
    "dual_ref": ("instruction_following", "reference_consistency", "realism"),
}


@dataclass(frozen=True)
class Source:
    """One source image of a MICo case.

    Attributes:
        path: path relative to the cases root.
        name: optional label shown to the presence judge ("a blue mug").
        is_face: a face source (graded face similarity instead of a VLM yes/no).
    """

    path: str
    name: str = ""
    is_face: bool = False


@dataclass(frozen=True)
class MicoCase:
    """A MICo-Bench-style case (seed 004)."""

    index: int
    prompt: str
    sources: tuple[Source, ...]
    reference: str
    category: str = "all"
    type: str | None = None

    @property
    def group(self) -> str:
        """The reporting group (``category``)."""
        return self.category


@dataclass(frozen=True)
class DualRefCase:
    """A dual-reference editing case (seed 003)."""

    index: int
    prompt: str
    inputs: tuple[str, ...]
    task: str = "all"

    @property
    def group(self) -> str:
        """The reporting group (``task``)."""
        return self.task


Case: TypeAlias = MicoCase | DualRefCase


@dataclass(frozen=True)
class CaseSet:
    """Loaded cases and the folder their paths are relative to."""

    kind: CaseKind
    cases: tuple[Case, ...]
    root: Path

    def __len__(self) -> int:
        return len(self.cases)

    def resolve(self, relative: str) -> Path:
        """Absolute path of a case path."""
        return self.root / relative

    def input_paths(self, case: Case) -> tuple[Path, ...]:
        """The images a model generates from, in prompt order."""
        if isinstance(case, MicoCase):
            return tuple(self.resolve(s.path) for s in case.sources)
        return tuple(self.resolve(p) for p in case.inputs)

    def generation_items(self) -> list[GenerationItem]:
        """One [`GenerationItem`][rewardkit.evaluation.generation.GenerationItem] per case."""
        return [GenerationItem(c.index, c.prompt, self.input_paths(c)) for c in self.cases]


def _read_entries(path: Path) -> list[Any]:
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:  # JSON Lines
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is neither a JSON list nor JSON Lines: {err}") from err
    if isinstance(data, Mapping) and "cases" in data:
        data = data["cases"]
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path} must hold a non-empty list of entries")
    return data


def detect_format(path: str | Path) -> BenchmarkFormat:
    """Tell the benchmark format from the first entry's fields.

    ``edit_image`` → ``"omniref"``; ``sources`` and ``reference`` → ``"mico"``; ``inputs`` →
    ``"dual_ref"``.

    Raises:
        ValueError: none of these fields is present.
    """
    entry = _read_entries(Path(path))[0]
    if isinstance(entry, Mapping):
        if "edit_image" in entry:
            return "omniref"
        if "sources" in entry and "reference" in entry:
            return "mico"
        if "inputs" in entry:
            return "dual_ref"
    keys = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
    raise ValueError(
        f"{path}: cannot tell the benchmark format from the first entry ({keys}); expected 'edit_image' "
        "(OmniRef-Bench), 'sources' + 'reference' (MICo-style) or 'inputs' (dual-reference)"
    )


def _field(entry: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in entry:
        raise ValueError(f"{where}: missing field {key!r}")
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{where}: field {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _paths(value: Any, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(p, str) and p for p in value):
        raise ValueError(f"{where}: {key!r} must be a non-empty list of paths")
    return tuple(value)


def _source(value: Any, k: int, faces: set[int], where: str) -> Source:
    if isinstance(value, str) and value:
        return Source(value, "", k in faces)
    if isinstance(value, Mapping) and isinstance(value.get("path"), str):
        return Source(
            value["path"], str(value.get("name", "")), bool(value.get("is_face", False)) or k in faces
        )
    raise ValueError(f"{where}: sources[{k}] must be a path or {{'path', 'name', 'is_face'}}, got {value!r}")


def _mico(entry: Mapping[str, Any], where: str) -> MicoCase:
    raw = _field(entry, "sources", list, where)
    if not raw:
        raise ValueError(f"{where}: 'sources' is empty")
    faces = entry.get("face_sources", [])
    if not isinstance(faces, list) or not all(isinstance(k, int) and 0 <= k < len(raw) for k in faces):
        raise ValueError(f"{where}: 'face_sources' must list 0-based source indices below {len(raw)}")
    sources = tuple(_source(v, k, set(faces), where) for k, v in enumerate(raw))
    category = entry.get("category", "all")
    kind = entry.get("type")
    return MicoCase(
        _field(entry, "index", int, where),
        _field(entry, "prompt", str, where),
        sources,
        _field(entry, "reference", str, where),
        str(category),
        None if kind is None else str(kind),
    )


def _dual(entry: Mapping[str, Any], where: str) -> DualRefCase:
    return DualRefCase(
        _field(entry, "index", int, where),
        _field(entry, "prompt", str, where),
        _paths(entry.get("inputs"), "inputs", where),
        str(entry.get("task", "all")),
    )


def load_cases(
    path: str | Path,
    root: str | Path | None = None,
    *,
    kind: CaseKind | None = None,
    check_files: bool = True,
) -> CaseSet:
    """Load MICo-style or dual-reference cases (JSON list or JSONL).

    Args:
        path: the cases file.
        root: folder the paths are relative to (default: the file's folder).
        kind: ``"mico"`` or ``"dual_ref"``; ``None`` detects it
            ([`detect_format`][rewardkit.evaluation.cases.detect_format]).
        check_files: check that every listed image exists.

    Returns:
        The [`CaseSet`][rewardkit.evaluation.cases.CaseSet].

    Raises:
        FileNotFoundError: the file, or (with ``check_files``) a listed image, is missing.
        ValueError: malformed entries (naming the entry), duplicate indices, or an OmniRef file.
    """
    file = Path(path)
    entries = _read_entries(file)
    detected = detect_format(file) if kind is None else kind
    if detected not in ("mico", "dual_ref"):
        raise ValueError(f"{file} is an OmniRef-Bench metadata file; load it with load_benchmark")
    parse = _mico if detected == "mico" else _dual
    cases: list[Case] = []
    seen: set[int] = set()
    for position, entry in enumerate(entries):
        where = f"case {position}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: expected an object, got {type(entry).__name__}")
        case = parse(entry, where)
        if case.index in seen:
            raise ValueError(f"{where}: index {case.index} appears twice")
        seen.add(case.index)
        cases.append(case)
    result = CaseSet(detected, tuple(cases), Path(root) if root is not None else file.parent)
    if check_files:
        listed = [p for c in cases for p in result.input_paths(c)]
        listed += [result.resolve(c.reference) for c in cases if isinstance(c, MicoCase)]
        missing = [str(p) for p in listed if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} image(s) listed in {file} are missing: {missing[:5]}")
    return result


@dataclass(frozen=True)
class CaseScore:
    """The judge's verdict on one generated image.

    Attributes:
        index: the case id.
        group: the reporting group (MICo category or dual-reference task).
        score: the case score (0–100 for MICo, 0–1 for dual-reference), ``None`` if the judge
            answers could not be read.
        components: the score's parts (``W``, ``SC``, ``PQ``, ... or the three yes/no answers).
    """

    index: int
    group: str
    score: float | None
    components: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (one line of the per-case JSONL)."""
        return {
            "index": self.index,
            "group": self.group,
            "score": self.score,
            "components": dict(self.components),
        }


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize_cases(kind: CaseKind, runs: Mapping[str, Sequence[CaseScore]]) -> dict[str, Any]:
    """Per method: mean score overall and per group, mean components, counts and failures.

    Returns:
        ``{"schema", "benchmark": kind, "scale", "methods": {name: {"score", "by_group",
        "components", "n_cases", "n_scored", "failures": {"judge": n}}}}``.
    """
    from rewardkit.evaluation.report import SUMMARY_SCHEMA

    methods: dict[str, Any] = {}
    for name, records in runs.items():
        scored = [r for r in records if r.score is not None]
        groups = list(dict.fromkeys(r.group for r in records))
        methods[name] = {
            "score": _mean([r.score for r in scored if r.score is not None]),
            "by_group": {
                g: _mean([r.score for r in scored if r.group == g and r.score is not None]) for g in groups
            },
            "components": {
                c: _mean([r.components[c] for r in scored if c in r.components]) for c in COMPONENTS[kind]
            },
            "n_cases": len(records),
            "n_scored": len(scored),
            "failures": {"judge": len(records) - len(scored)},
        }
    return {"schema": SUMMARY_SCHEMA, "benchmark": kind, "scale": SCALES[kind], "methods": methods}


def cases_table(summary: Mapping[str, Any]) -> str:
    """Markdown table: one row per method, overall score then one column per group."""
    digits = 1 if summary["benchmark"] == "mico" else 3
    groups = list(dict.fromkeys(g for m in summary["methods"].values() for g in m["by_group"]))
    headers = ["Method", "**Overall**", *groups, "scored"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for name, method in summary["methods"].items():

        def cell(v: float | None) -> str:
            return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"

        row = [name, f"**{cell(method['score'])}**", *(cell(method["by_group"].get(g)) for g in groups)]
        row.append(f"{method['n_scored']}/{method['n_cases']}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot_cases(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Grouped bar chart of each method's score per group and overall (needs matplotlib)."""
    from rewardkit.evaluation.report import grouped_bars

    groups = list(dict.fromkeys(g for m in summary["methods"].values() for g in m["by_group"]))
    columns = [*groups, "Overall"]
    values = {
        name: [*(m["by_group"].get(g) for g in groups), m["score"]] for name, m in summary["methods"].items()
    }
    title = "Weighted-Ref-VIEScore (0–100)" if summary["benchmark"] == "mico" else "yes/no judge score (0–1)"
    return grouped_bars([(title, columns, values)], path)
