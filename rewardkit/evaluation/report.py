"""Aggregate per-instance scores into the paper's tables, a JSON summary and plots.

The aggregation follows how OmniRef-Bench's Tab. 2 is formed:

| column | value |
|---|---|
| Subject | (mean CLIP-I + mean DINOv2) / 2, each mean over all (instance, subject) pairs |
| Style, Bg, Light, Pose | mean over the instances the metric applies to |
| Obj Avg | unweighted mean of the five columns |
| MLLM dimension | mean of the 0–10 scores of applicable items |
| MLLM Avg | mean of the six dimension means |

When the images were compared with ground-truth targets, each method also gets a ``fidelity``
block: mean PSNR, SSIM and perceptual distance, and the diversity of its images against the
targets' ([`rewardkit.evaluation.fidelity`][rewardkit.evaluation.fidelity]).

Every aggregate is also broken down by the number of references. Failure counts (missed
detections, unreadable judge answers, ...) recorded per instance are summed per method.
"""

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from rewardkit.evaluation.benchmark import METRICS

__all__ = [
    "FIDELITY_KEYS",
    "MLLM_DIMENSIONS",
    "SUMMARY_SCHEMA",
    "InstanceScores",
    "fidelity_table",
    "grouped_bars",
    "markdown_table",
    "n_refs_table",
    "plot_scores_by_n_refs",
    "plot_scores_by_type",
    "summarize",
    "write_summary",
]

#: The six MLLM judge dimensions, in the paper's column order (Subject, Bg, Style, Light, Aes, IF).
MLLM_DIMENSIONS: Final[tuple[str, ...]] = (
    "subject_consistency",
    "background_consistency",
    "style_consistency",
    "lighting_consistency",
    "aesthetic_quality",
    "text_adherence",
)
#: Keys of a method's ``fidelity`` block in ``summary.json`` (in the report's column order).
FIDELITY_KEYS: Final[tuple[str, ...]] = (
    "psnr",
    "ssim",
    "perceptual",
    "diversity",
    "target_diversity",
    "diversity_ratio",
)
#: Version tag written into ``summary.json``.
SUMMARY_SCHEMA: Final[str] = "rewardkit.eval/1"

_OBJECTIVE_HEADERS: Final[dict[str, str]] = {
    "subject": "Subject",
    "style": "Style",
    "background": "Bg",
    "lighting": "Light",
    "pose": "Pose",
}
_MLLM_HEADERS: Final[dict[str, str]] = {
    "subject_consistency": "M-Subject",
    "background_consistency": "M-Bg",
    "style_consistency": "M-Style",
    "lighting_consistency": "M-Light",
    "aesthetic_quality": "Aes",
    "text_adherence": "IF",
}


@dataclass(frozen=True)
class InstanceScores:
    """Scores of one generated image.

    Attributes:
        index: the benchmark instance id.
        n_refs: number of references of the instance.
        category: the instance's type combination.
        subject_clip: CLIP-I cosine of each subject (one per subject reference).
        subject_dino: DINOv2 cosine of each subject.
        objective: score of each other objective metric (``style``, ``background``,
            ``lighting``, ``pose``) that applies; absent when it does not apply.
        mllm: judge score (0–10) of each applicable MLLM dimension.
        failures: counts of what went wrong for this image (``subject_misses``,
            ``pose_miss``, ``judge``, ...); summed per method in the summary.
        details: sub-scores for the JSONL (e.g. ``{"lighting": {"luminance": ...}}``).
        psnr: PSNR against the instance's target in dB (``None``: not compared).
        ssim: SSIM against the target.
        perceptual: LPIPS-style distance to the target (``None`` also when the network is
            unavailable). The three keys appear in the JSONL only when one is set.
        custom: score of each metric registered with
            [`register_metric`][rewardkit.evaluation.metric_registry.register_metric] (not one
            of the built-in five) that applies; the key appears in the JSONL only when set.
    """

    index: int
    n_refs: int
    category: str
    subject_clip: tuple[float, ...] = ()
    subject_dino: tuple[float, ...] = ()
    objective: Mapping[str, float] = field(default_factory=dict)
    mllm: Mapping[str, float] = field(default_factory=dict)
    failures: Mapping[str, int] = field(default_factory=dict)
    details: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    psnr: float | None = None
    ssim: float | None = None
    perceptual: float | None = None
    custom: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.objective) - set(METRICS[1:])
        if unknown:
            raise ValueError(f"objective has unknown metric(s) {sorted(unknown)}; expected {METRICS[1:]}")
        unknown = set(self.mllm) - set(MLLM_DIMENSIONS)
        if unknown:
            raise ValueError(f"mllm has unknown dimension(s) {sorted(unknown)}; expected {MLLM_DIMENSIONS}")
        if len(self.subject_clip) != len(self.subject_dino):
            raise ValueError("subject_clip and subject_dino need one score per subject each")
        values = [*self.subject_clip, *self.subject_dino, *self.objective.values(), *self.mllm.values()]
        values += list(self.custom.values())
        values += [v for v in (self.psnr, self.ssim, self.perceptual) if v is not None]
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"instance {self.index}: scores must be finite numbers")
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in self.failures.values()):
            raise ValueError(f"instance {self.index}: failure counts must be ints >= 0, got {self.failures}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (one line of the per-instance JSONL)."""
        record = asdict(self)
        record["objective"], record["mllm"] = dict(self.objective), dict(self.mllm)
        record["failures"] = dict(self.failures)
        record["details"] = {k: dict(v) for k, v in self.details.items()}
        if self.psnr is None and self.ssim is None and self.perceptual is None:
            for key in ("psnr", "ssim", "perceptual"):
                del record[key]
        if self.custom:
            record["custom"] = dict(self.custom)
        else:
            del record["custom"]
        return record


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _aggregate(records: Sequence[InstanceScores]) -> dict[str, Any]:
    clip = [s for r in records for s in r.subject_clip]
    dino = [s for r in records for s in r.subject_dino]
    subject = (sum(clip) / len(clip) + sum(dino) / len(dino)) / 2 if clip else None
    objective: dict[str, float | None] = {"subject": subject}
    counts: dict[str, int] = {"subject": len(clip)}
    for metric in METRICS[1:]:
        scores = [r.objective[metric] for r in records if metric in r.objective]
        objective[metric], counts[metric] = _mean(scores), len(scores)
    present = [v for v in objective.values() if v is not None]
    objective["avg"] = _mean(present) if len(present) == len(METRICS) else None
    # The mean of whichever types have instances: what a by-n_refs breakdown can plot (a bucket
    # rarely holds all five types; lighting and style never share a category).
    objective["avg_present"] = _mean(present)

    mllm: dict[str, float | None] | None = None
    if any(r.mllm for r in records):
        mllm = {d: _mean([r.mllm[d] for r in records if d in r.mllm]) for d in MLLM_DIMENSIONS}
        dims = [v for v in mllm.values() if v is not None]
        mllm["avg"] = _mean(dims) if len(dims) == len(MLLM_DIMENSIONS) else None
        mllm["avg_present"] = _mean(dims)
    failures: dict[str, int] = {}
    for r in records:
        for key, count in r.failures.items():
            failures[key] = failures.get(key, 0) + count
    out: dict[str, Any] = {
        "objective": objective,
        "counts": counts,
        "mllm": mllm,
        "n_instances": len(records),
        "failures": dict(sorted(failures.items())),
    }
    names = list(dict.fromkeys(name for r in records for name in r.custom))
    if names:  # registered metrics: their means and counts (absent without any)
        out["custom"] = {n: _mean([r.custom[n] for r in records if n in r.custom]) for n in names}
        out["custom_counts"] = {n: sum(n in r.custom for r in records) for n in names}
    return out


def _fidelity(records: Sequence[InstanceScores], diversity: Mapping[str, Any]) -> dict[str, Any] | None:
    compared = [r for r in records if r.psnr is not None or r.ssim is not None]
    if not compared and not diversity:
        return None
    block: dict[str, Any] = {
        key: _mean([v for r in compared if (v := getattr(r, key)) is not None])
        for key in ("psnr", "ssim", "perceptual")
    }
    for key in FIDELITY_KEYS[3:]:
        block[key] = diversity.get(key)
    block["n_compared"] = len(compared)
    return block


def summarize(
    runs: Mapping[str, Iterable[InstanceScores]],
    *,
    diversity: Mapping[str, Mapping[str, float | None]] | None = None,
) -> dict[str, Any]:
    """Aggregate the per-instance scores of each method, overall and by number of references.

    Args:
        runs: per-instance scores of each method, e.g. ``{"base": [...], "sft": [...], "rl": [...]}``.
        diversity: per method, ``{"diversity", "target_diversity", "diversity_ratio"}``
            (set-level values that per-image records cannot hold; see
            [`diversity`][rewardkit.evaluation.fidelity.diversity]).

    Returns:
        The ``summary.json`` dict: ``{"schema", "benchmark": "omniref", "methods": {name:
        {"objective", "counts", "mllm", "n_instances", "failures", "by_n_refs": {n: {...}}}}}``.
        An average is ``None`` when one of its columns has no applicable instance (it is not
        formed from a partial set). Methods whose images were compared with targets (or that
        have ``diversity``) also get ``"fidelity"``: the means of ``psnr``, ``ssim`` and
        ``perceptual``, the three diversity values and ``n_compared`` (images with a target).
    """
    methods: dict[str, Any] = {}
    for name, records in runs.items():
        records = list(records)
        summary = _aggregate(records)
        by_n: dict[str, Any] = {}
        for n in sorted({r.n_refs for r in records}):
            by_n[str(n)] = _aggregate([r for r in records if r.n_refs == n])
        summary["by_n_refs"] = by_n
        fidelity = _fidelity(records, (diversity or {}).get(name, {}))
        if fidelity is not None:
            summary["fidelity"] = fidelity
        methods[name] = summary
    return {"schema": SUMMARY_SCHEMA, "benchmark": "omniref", "methods": methods}


def _cell(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_table(summary: Mapping[str, Any]) -> str:
    """The paper's Tab. 2 layout: objective scores per type and Avg, then MLLM dimensions and Avg."""
    has_mllm = any(m["mllm"] is not None for m in summary["methods"].values())
    headers = ["Method", *_OBJECTIVE_HEADERS.values(), "**Obj Avg**"]
    if has_mllm:
        headers += [*_MLLM_HEADERS.values(), "**MLLM Avg**"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for name, method in summary["methods"].items():
        obj = method["objective"]
        row = [name, *(_cell(obj[k], 2) for k in _OBJECTIVE_HEADERS), f"**{_cell(obj['avg'], 2)}**"]
        if has_mllm:
            mllm = method["mllm"] or {}
            row += [_cell(mllm.get(k), 2) for k in _MLLM_HEADERS] + [f"**{_cell(mllm.get('avg'), 2)}**"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def fidelity_table(summary: Mapping[str, Any]) -> str:
    """The target-fidelity table (PSNR, SSIM, perceptual, diversity) as Markdown; ``""`` if none.

    Only methods with a ``fidelity`` block are listed.
    """
    methods = {name: m["fidelity"] for name, m in summary["methods"].items() if m.get("fidelity")}
    if not methods:
        return ""
    headers = ["Method", "PSNR (dB) ↑", "SSIM ↑", "Perceptual ↓", "Diversity", "Target div.", "Div. ratio"]
    digits = {"psnr": 2, "ssim": 3, "perceptual": 3, "diversity": 3, "target_diversity": 3}
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for name, block in methods.items():
        row = [name, *(_cell(block.get(k), digits.get(k, 2)) for k in FIDELITY_KEYS)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def custom_table(summary: Mapping[str, Any]) -> str:
    """The registered (custom) metrics' means per method as Markdown; ``""`` without any."""
    methods = summary["methods"]
    names = list(dict.fromkeys(n for m in methods.values() for n in m.get("custom", {})))
    if not names:
        return ""
    lines = ["| Method | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for name, method in methods.items():
        values = method.get("custom", {})
        lines.append(f"| {name} | " + " | ".join(_cell(values.get(n), 4) for n in names) + " |")
    return "\n".join(lines) + "\n"


def n_refs_table(summary: Mapping[str, Any], method: str) -> str:
    """One method's objective scores (and MLLM Avg) by number of references, as Markdown.

    "Obj Avg" needs all five types in the bucket; "Mean (present)" averages the types present.
    """
    data = summary["methods"][method]
    has_mllm = data["mllm"] is not None
    headers = ["refs", "n", *_OBJECTIVE_HEADERS.values(), "Obj Avg", "Mean (present)"]
    headers += ["MLLM Avg"] if has_mllm else []
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for n, agg in data["by_n_refs"].items():
        obj = agg["objective"]
        row = [
            n,
            str(agg["n_instances"]),
            *(_cell(obj[k], 2) for k in _OBJECTIVE_HEADERS),
            _cell(obj["avg"], 2),
            _cell(obj["avg_present"], 2),
        ]
        if has_mllm:
            row.append(_cell((agg["mllm"] or {}).get("avg"), 2))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _report_markdown(summary: Mapping[str, Any], notes: Sequence[str]) -> str:
    parts = ["# Evaluation\n"]
    warnings = summary.get("warnings") or []
    if warnings:
        parts.append("\n" + "".join(f"> **Warning:** {w}\n>\n" for w in warnings).removesuffix(">\n") + "\n")
    parts.append(markdown_table(summary))
    parts.append(
        "\nObjective scores on 0–1 (Subject = mean of CLIP-I and DINO over all subject pairs; "
        "Obj Avg = mean of the five columns); MLLM scores on 0–10 (MLLM Avg = mean of the six "
        "dimension means). – marks a column with no applicable instance.\n"
    )
    fidelity = fidelity_table(summary)
    if fidelity:
        parts.append("\n## Target fidelity\n\n" + fidelity)
        parts.append(
            "\nAgainst each instance's ground-truth target: PSNR (dB, capped at 100), SSIM, and an "
            "LPIPS-style, uncalibrated EfficientNet-Lite0 feature distance (lower is closer). "
            "Diversity = mean pairwise RMS distance of the method's images (64 px thumbnails); "
            "Target div. = the same for the targets of the same instances; Div. ratio = their "
            "quotient (well below 1: the outputs may have collapsed).\n"
        )
    custom = custom_table(summary)
    if custom:
        parts.append("\n## Other metrics\n\n" + custom)
        parts.append("\nMetrics registered with `register_metric`: the mean over the images it applies to.\n")
    for name, method in summary["methods"].items():
        parts.append(f"\n## {name}: by number of references\n\n" + n_refs_table(summary, name))
        if method.get("failures"):
            counts = ", ".join(f"{k}: {v}" for k, v in method["failures"].items())
            parts.append(f"\nFailures: {counts}\n")
    if notes:
        parts.append("\n## Notes\n\n" + "".join(f"- {note}\n" for note in notes))
    settings = summary.get("settings")
    if settings:
        parts.append("\n## Settings\n\n```json\n" + json.dumps(settings, indent=2) + "\n```\n")
    return "".join(parts)


def write_summary(
    runs: Mapping[str, Iterable[InstanceScores]],
    out_dir: str | Path,
    *,
    plots: bool = True,
    settings: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    extra: Mapping[str, Mapping[str, Any]] | None = None,
    diversity: Mapping[str, Mapping[str, float | None]] | None = None,
    warnings: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write ``scores_<method>.jsonl``, ``summary.json``, ``report.md`` and (optionally) PNG plots.

    Files are rewritten, never appended to, so a rerun does not duplicate rows. The plots are
    ``score_vs_n_refs.png`` ([`plot_scores_by_n_refs`][rewardkit.evaluation.report.plot_scores_by_n_refs])
    and ``scores_by_type.png`` ([`plot_scores_by_type`][rewardkit.evaluation.report.plot_scores_by_type]).

    Args:
        runs: per-instance scores of each method.
        out_dir: output folder (created).
        plots: also write the PNG plots (needs matplotlib).
        settings: evaluation settings recorded under ``"settings"`` in ``summary.json`` and at
            the end of ``report.md``.
        notes: caveats listed in ``report.md`` (e.g. offline stand-in encoders, oracle providers).
        extra: per method, fields merged into its ``summary.json`` entry (e.g. missing images).
        diversity: per method, the set-level diversity values of its ``fidelity`` block (see
            [`summarize`][rewardkit.evaluation.report.summarize]).
        warnings: recorded under ``"warnings"`` in ``summary.json`` (when not ``None``) and
            shown at the top of ``report.md`` (e.g. collapse warnings).

    Returns:
        The summary dict (as written to ``summary.json``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = {name: list(records) for name, records in runs.items()}
    for name, records in runs.items():
        lines = "".join(json.dumps(r.to_json()) + "\n" for r in records)
        (out / f"scores_{name}.jsonl").write_text(lines, encoding="utf-8")
    summary = summarize(runs, diversity=diversity)
    for name, fields in (extra or {}).items():
        summary["methods"][name].update(fields)
    if warnings is not None:
        summary["warnings"] = list(warnings)
    if settings is not None:
        summary["settings"] = dict(settings)
    if notes:
        summary["notes"] = list(notes)
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "report.md").write_text(_report_markdown(summary, notes), encoding="utf-8")
    if plots:
        plot_scores_by_n_refs(summary, out / "score_vs_n_refs.png")
        plot_scores_by_type(summary, out / "scores_by_type.png")
    return summary


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'rewardkit[plots]'") from err
    return plt


def grouped_bars(
    panels: Sequence[tuple[str, Sequence[str], Mapping[str, Sequence[float | None]]]], path: str | Path
) -> Path:
    """Grouped bar charts, one panel per ``(title, column labels, {method: values})``.

    ``None`` values leave a gap. Each method keeps one colour across panels. Needs matplotlib.
    """
    plt = _pyplot()
    widths = [max(3.0, 0.9 * len(cols) + 1.0) for _, cols, _ in panels]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(sum(widths), 3.8), gridspec_kw={"width_ratios": widths}, squeeze=False
    )
    methods = list(dict.fromkeys(m for _, _, values in panels for m in values))
    colours = {name: f"C{i % 10}" for i, name in enumerate(methods)}
    width = 0.8 / max(1, len(methods))
    for ax, (title, columns, values) in zip(axes[0], panels, strict=True):
        for k, name in enumerate(methods):
            row = values.get(name)
            if row is None:
                continue
            xs = [i + (k - (len(methods) - 1) / 2) * width for i, v in enumerate(row) if v is not None]
            ys = [v for v in row if v is not None]
            ax.bar(xs, ys, width=width, color=colours[name], label=name)
        ax.set_xticks(range(len(columns)), list(columns), rotation=30, ha="right")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize="small")
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    target = Path(path)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


def plot_scores_by_type(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Bar chart of each method's objective scores per type and Obj Avg (needs matplotlib).

    When the runs were judged, a second panel shows the MLLM dimensions and MLLM Avg.
    """
    methods = summary["methods"]
    objective_cols = [*_OBJECTIVE_HEADERS.values(), "Obj Avg"]
    objective = {
        name: [m["objective"][k] for k in (*_OBJECTIVE_HEADERS, "avg")] for name, m in methods.items()
    }
    panels: list[tuple[str, Sequence[str], Mapping[str, Sequence[float | None]]]] = [
        ("objective (0–1)", objective_cols, objective)
    ]
    judged = {name: m["mllm"] for name, m in methods.items() if m["mllm"] is not None}
    if judged:
        mllm = {name: [dims.get(k) for k in (*_MLLM_HEADERS, "avg")] for name, dims in judged.items()}
        panels.append(("MLLM judge (0–10)", [*_MLLM_HEADERS.values(), "MLLM Avg"], mllm))
    return grouped_bars(panels, path)


def plot_scores_by_n_refs(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Plot each method's objective scores against the number of references (needs matplotlib).

    One panel per objective type, one for the mean of the types present at each count (a count
    rarely has all five types), and one for the MLLM Avg when judged; one line per method.
    """
    plt = _pyplot()

    def objective(key: str) -> Callable[[Mapping[str, Any]], float | None]:
        return lambda agg: agg["objective"].get(key)

    panels = [(title, objective(key)) for key, title in _OBJECTIVE_HEADERS.items()]
    panels.append(("Mean of types present", objective("avg_present")))
    if any(m["mllm"] is not None for m in summary["methods"].values()):
        panels.append(("MLLM, mean of dims present", lambda agg: (agg["mllm"] or {}).get("avg_present")))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), sharex=True, layout="none")
    colours = {name: f"C{i % 10}" for i, name in enumerate(summary["methods"])}  # same colour in every panel
    for ax, (title, value) in zip(axes, panels, strict=True):
        for name, method in summary["methods"].items():
            points = [
                (int(n), value(agg)) for n, agg in method["by_n_refs"].items() if value(agg) is not None
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=name, color=colours[name])
        ax.set_title(title)
        ax.set_xlabel("number of references")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score")
    labelled = {
        label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels(), strict=True)
    }
    fig.subplots_adjust(left=0.05, right=0.99, top=0.9, bottom=0.28, wspace=0.35)  # legend goes below
    if labelled:
        fig.legend(
            labelled.values(), labelled.keys(), loc="lower center", ncol=len(labelled), fontsize="small"
        )
    target = Path(path)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target
