"""Evaluation tasks: what [`evaluate`][rewardkit.evaluate] loops over, one per benchmark format.

Every benchmark format implements the small [`EvalTask`][rewardkit.evaluation.tasks.EvalTask]
protocol — its items, which generated image belongs to which item, scoring one run, the
summary and the files — so the evaluation loop in
[`pipeline`][rewardkit.evaluation.pipeline] knows no format:

* [`OmniRefTask`][rewardkit.evaluation.tasks.OmniRefTask]: OmniRef-Bench metadata and
  OmniRef-mini (the registered per-image metrics of
  [`metric_registry`][rewardkit.evaluation.metric_registry], target fidelity, the MLLM judge);
* [`CaseTask`][rewardkit.evaluation.tasks.CaseTask]: MICo-style cases (Weighted-Ref-VIEScore)
  and dual-reference cases (the yes/no judge).
"""

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from rewardkit.evaluation._images import load_rgb, to_tensor
from rewardkit.evaluation.benchmark import METRICS, BenchInstance, Benchmark, load_benchmark
from rewardkit.evaluation.cases import (
    CaseScore,
    CaseSet,
    MicoCase,
    cases_table,
    detect_format,
    load_cases,
    plot_cases,
    summarize_cases,
)
from rewardkit.evaluation.contact_sheet import contact_sheet
from rewardkit.evaluation.fidelity import DIVERSITY_SIZE, PSNR_MAX_DB, collapse_warnings
from rewardkit.evaluation.fidelity_scorer import FidelityScorer
from rewardkit.evaluation.generation import GenerationItem
from rewardkit.evaluation.metric_registry import (
    MetricContext,
    Resources,
    describe_encoder,
    get_metric,
    list_metrics,
)
from rewardkit.evaluation.metrics import STAND_INS, EncoderSpec
from rewardkit.evaluation.report import (
    MLLM_DIMENSIONS,
    InstanceScores,
    markdown_table,
    summarize,
    write_summary,
)

if TYPE_CHECKING:
    from rewardkit.evaluation.config import EvalConfig
    from rewardkit.rewards.encoders import ImageEncoder

__all__ = ["CaseTask", "EvalTask", "OmniRefTask", "load_task"]

logger = logging.getLogger("rewardkit.evaluation")

_JUDGE_CHUNK: Final[int] = 16  # images per judge batch (bounds the memory of encoded requests)

Pairs = list[tuple[Any, Path]]


@runtime_checkable
class EvalTask(Protocol):
    """One benchmark format, as the evaluation loop sees it.

    The loop calls, in order: ``check`` (before any image is generated), ``generation_items``
    (runs with a backbone), ``match`` (per run), ``describe`` (the settings and notes),
    ``prepare`` (load the models once), ``score`` (per run), ``summarize``, ``write`` (with
    an ``out_dir``) and ``table``.
    """

    kind: str
    items: Sequence[Any]

    def check(self, config: "EvalConfig") -> None:
        """Refuse a config this task cannot run (before anything is generated)."""
        ...

    def generation_items(self) -> list[GenerationItem]:
        """What a backbone generates: one item per benchmark item."""
        ...

    def match(self, found: Mapping[int, Path], *, faithful: bool) -> tuple[Pairs, list[int]]:
        """Pair items with the images ``found`` (index → path); also the indices without one."""
        ...

    def uses_judge(self, config: "EvalConfig") -> bool:
        """Whether the MLLM judge scores this task under ``config``."""
        ...

    def describe(self, config: "EvalConfig", settings: dict[str, Any], notes: list[str]) -> None:
        """Add the task's settings and caveats to ``settings`` / ``notes``."""
        ...

    def prepare(self, config: "EvalConfig", notes: list[str]) -> None:
        """Load what scoring needs, once for all runs."""
        ...

    def score(self, run: str, pairs: Pairs, config: "EvalConfig") -> list[Any]:
        """The per-image records of one run."""
        ...

    def summarize(
        self,
        records: Mapping[str, Sequence[Any]],
        extra: Mapping[str, Mapping[str, Any]],
        settings: dict[str, Any],
        notes: list[str],
        config: "EvalConfig",
    ) -> dict[str, Any]:
        """The ``summary.json`` dict of all runs."""
        ...

    def write(
        self,
        out: Path,
        records: Mapping[str, Sequence[Any]],
        summary: dict[str, Any],
        extra: Mapping[str, Mapping[str, Any]],
        folders: Mapping[str, Path],
        config: "EvalConfig",
    ) -> dict[str, Any]:
        """Write the files into ``out``; return the summary as written."""
        ...

    def table(self, summary: Mapping[str, Any]) -> str:
        """The Markdown table of the summary."""
        ...


def load_task(benchmark: Any, root: str | Path | None = None, limit: int | None = None) -> EvalTask:
    """The task of a benchmark file (format detected), a loaded ``Benchmark`` / ``CaseSet`` or a task."""
    if isinstance(benchmark, OmniRefTask | CaseTask):
        loaded: Benchmark | CaseSet = benchmark.bench
    elif isinstance(benchmark, Benchmark | CaseSet):
        loaded = benchmark
    else:
        fmt = detect_format(benchmark)
        loaded = (
            load_benchmark(benchmark, root) if fmt == "omniref" else load_cases(benchmark, root, kind=fmt)
        )
    if limit is not None:
        if isinstance(loaded, Benchmark):
            loaded = Benchmark(loaded.instances[:limit], loaded.root)
        else:
            loaded = CaseSet(loaded.kind, loaded.cases[:limit], loaded.root)
    return OmniRefTask(loaded) if isinstance(loaded, Benchmark) else CaseTask(loaded)


class OmniRefTask:
    """OmniRef-Bench metadata and OmniRef-mini: per-image metrics, fidelity and the MLLM judge."""

    kind = "omniref"

    def __init__(self, bench: Benchmark) -> None:
        self.bench = bench
        self.items: Sequence[BenchInstance] = bench.instances
        self.has_targets = any(inst.target is not None for inst in bench)
        self.scorer: _ObjectiveScorer | None = None
        self.fidelity: FidelityScorer | None = None
        self.judge: Any = None
        self.diversities: dict[str, dict[str, float | None]] = {}

    def check(self, config: "EvalConfig") -> None:
        """[`EvalTask.check`][rewardkit.evaluation.tasks.EvalTask.check]."""
        if "mllm" in config.metrics and config.judge is None:
            raise ValueError("metrics include 'mllm' but no judge was given: pass judge=JudgeSettings(...)")

    def generation_items(self) -> list[GenerationItem]:
        """[`EvalTask.generation_items`][rewardkit.evaluation.tasks.EvalTask.generation_items]."""
        bench = self.bench
        return [
            GenerationItem(inst.index, inst.prompt, tuple(bench.resolve(r.path) for r in inst.references))
            for inst in bench
        ]

    def match(self, found: Mapping[int, Path], *, faithful: bool) -> tuple[Pairs, list[int]]:
        """[`EvalTask.match`][rewardkit.evaluation.tasks.EvalTask.match]."""
        positions = {item.index: k for k, item in enumerate(self.items)}
        return _match(self.items, positions, found, faithful=faithful)

    def uses_judge(self, config: "EvalConfig") -> bool:
        """[`EvalTask.uses_judge`][rewardkit.evaluation.tasks.EvalTask.uses_judge]."""
        return "mllm" in config.metrics

    def describe(self, config: "EvalConfig", settings: dict[str, Any], notes: list[str]) -> None:
        """[`EvalTask.describe`][rewardkit.evaluation.tasks.EvalTask.describe]."""
        bench = self.bench
        metrics = [m for m in config.metrics if m != "mllm" or config.judge is not None]
        settings["metrics"] = metrics
        background = config.background if config.background is not None else config.clip
        encoders = {"clip": config.clip, "dino": config.dino, "style": config.style, "background": background}
        settings["encoders"] = {k: describe_encoder(v) for k, v in encoders.items()}
        stand_ins = sorted(k for k, v in encoders.items() if _is_stand_in(v))
        if stand_ins:
            notes.append(
                f"offline stand-in encoders for {', '.join(stand_ins)}: numbers are not comparable with "
                "the paper's (CLIP ViT-B/16, DINOv2-base, CSD ViT-L)"
            )
        settings["providers"] = {
            "detector": config.detector
            if isinstance(config.detector, str)
            else type(config.detector).__name__,
            "masks": config.masks if isinstance(config.masks, str) else type(config.masks).__name__,
            "keypoints": config.keypoints
            if isinstance(config.keypoints, str)
            else type(config.keypoints).__name__,
        }
        settings["crop_padding"] = config.crop_padding
        if "fidelity" in metrics:
            if any(inst.target is not None for inst in bench):
                settings["fidelity"] = {
                    "psnr_max_db": PSNR_MAX_DB,
                    "diversity_size": DIVERSITY_SIZE,
                    "collapse_threshold": config.collapse_threshold,
                    "collapse_drop": config.collapse_drop,
                }
                notes.append(
                    "target fidelity: the perceptual distance is LPIPS-style on EfficientNet-Lite0 "
                    "features without learned weights (uncalibrated; not LPIPS numbers)"
                )
            else:
                notes.append("the benchmark's instances have no targets: no target fidelity")
        if config.detector == "ground_truth" and {"subject", "background"} & set(metrics):
            notes.append("subject boxes are the target layout from ground_truth.json, not detections")
        if config.keypoints == "ground_truth" and "pose" in metrics:
            notes.append(
                "pose keypoints come from ground_truth.json (an oracle): pose scores check the pipeline "
                "and do not measure the generated images"
            )

    def prepare(self, config: "EvalConfig", notes: list[str]) -> None:
        """[`EvalTask.prepare`][rewardkit.evaluation.tasks.EvalTask.prepare]."""
        bench = self.bench
        self.scorer = _ObjectiveScorer(bench, config) if set(config.metrics) & set(list_metrics()) else None
        self.judge = None
        if "mllm" in config.metrics:
            from rewardkit.rewards.judges import OmniRefJudge

            assert config.judge is not None
            applicability = config.judge.applicability or ("model" if config.faithful else "metadata")
            self.judge = OmniRefJudge(
                config.judge.build_client(faithful=config.faithful), applicability=applicability
            )
        self.fidelity = (
            FidelityScorer(bench, device=config.device)
            if "fidelity" in config.metrics and self.has_targets
            else None
        )
        if self.fidelity is not None and self.fidelity.note is not None:
            notes.append(self.fidelity.note)
        self.diversities = {}

    def score(self, run: str, pairs: Pairs, config: "EvalConfig") -> list[Any]:
        """[`EvalTask.score`][rewardkit.evaluation.tasks.EvalTask.score]."""
        from tqdm import tqdm

        scorer, fidelity = self.scorer, self.fidelity
        run_records = []
        for inst, path in tqdm(pairs, desc=f"scoring {run}", unit="img", disable=not config.progress):
            # faithful: the scripts read generated images with cv2.imread
            image = (
                load_rgb(path, opencv_decoder=config.faithful)
                if scorer is not None or fidelity is not None
                else None
            )
            if scorer is None or image is None:
                record = InstanceScores(inst.index, inst.n_refs, inst.category)
            else:
                record = scorer.score(inst, image)
            if fidelity is not None and image is not None:
                record = fidelity.score(inst, image, record)
            run_records.append(record)
        if fidelity is not None:
            run_records, self.diversities[run] = fidelity.finish(run_records)
        if self.judge is not None:
            run_records = _judge_omniref(self.bench, pairs, run_records, self.judge, config.progress)
        return run_records

    def summarize(
        self,
        records: Mapping[str, Sequence[Any]],
        extra: Mapping[str, Mapping[str, Any]],
        settings: dict[str, Any],
        notes: list[str],
        config: "EvalConfig",
    ) -> dict[str, Any]:
        """[`EvalTask.summarize`][rewardkit.evaluation.tasks.EvalTask.summarize]."""
        warnings = collapse_warnings(
            self.diversities, threshold=config.collapse_threshold, drop=config.collapse_drop
        )
        for message in warnings:
            logger.warning("%s", message)
        summary = summarize(records, diversity=self.diversities)
        for name, fields in extra.items():
            summary["methods"][name].update(fields)
        summary["warnings"] = warnings
        summary["settings"], summary["notes"] = settings, notes
        return summary

    def write(
        self,
        out: Path,
        records: Mapping[str, Sequence[Any]],
        summary: dict[str, Any],
        extra: Mapping[str, Mapping[str, Any]],
        folders: Mapping[str, Path],
        config: "EvalConfig",
    ) -> dict[str, Any]:
        """[`EvalTask.write`][rewardkit.evaluation.tasks.EvalTask.write]."""
        written = write_summary(
            records,
            out,
            plots=config.plots,
            settings=summary["settings"],
            notes=summary["notes"],
            extra=extra,
            diversity=self.diversities,
            warnings=summary["warnings"],
        )
        if self.has_targets:
            contact_sheet(self.bench, folders, out / "contact_sheet.png")
        return written

    def table(self, summary: Mapping[str, Any]) -> str:
        """[`EvalTask.table`][rewardkit.evaluation.tasks.EvalTask.table]."""
        return markdown_table(summary)


class CaseTask:
    """MICo-style (Weighted-Ref-VIEScore) and dual-reference (yes/no) cases, scored by a judge."""

    def __init__(self, cases: CaseSet) -> None:
        self.bench = cases
        self.kind: str = cases.kind
        self.items: Sequence[Any] = cases.cases
        self.judge: Any = None

    def check(self, config: "EvalConfig") -> None:
        """[`EvalTask.check`][rewardkit.evaluation.tasks.EvalTask.check]."""
        pass  # the missing judge is reported by prepare (after the images are matched)

    def generation_items(self) -> list[GenerationItem]:
        """[`EvalTask.generation_items`][rewardkit.evaluation.tasks.EvalTask.generation_items]."""
        return self.bench.generation_items()

    def match(self, found: Mapping[int, Path], *, faithful: bool) -> tuple[Pairs, list[int]]:
        """[`EvalTask.match`][rewardkit.evaluation.tasks.EvalTask.match]."""
        positions = {item.index: k for k, item in enumerate(self.items)}
        return _match(self.items, positions, found, faithful=False)  # the position quirk is OmniRef's

    def uses_judge(self, config: "EvalConfig") -> bool:
        """[`EvalTask.uses_judge`][rewardkit.evaluation.tasks.EvalTask.uses_judge]."""
        return True

    def describe(self, config: "EvalConfig", settings: dict[str, Any], notes: list[str]) -> None:
        """[`EvalTask.describe`][rewardkit.evaluation.tasks.EvalTask.describe]."""
        pass

    def prepare(self, config: "EvalConfig", notes: list[str]) -> None:
        """[`EvalTask.prepare`][rewardkit.evaluation.tasks.EvalTask.prepare]."""
        self.judge = _case_judge(self.bench, config)

    def score(self, run: str, pairs: Pairs, config: "EvalConfig") -> list[Any]:
        """[`EvalTask.score`][rewardkit.evaluation.tasks.EvalTask.score]."""
        return _score_cases(self.bench, pairs, self.judge, config)

    def summarize(
        self,
        records: Mapping[str, Sequence[Any]],
        extra: Mapping[str, Mapping[str, Any]],
        settings: dict[str, Any],
        notes: list[str],
        config: "EvalConfig",
    ) -> dict[str, Any]:
        """[`EvalTask.summarize`][rewardkit.evaluation.tasks.EvalTask.summarize]."""
        summary = summarize_cases(self.bench.kind, records)
        for name, fields in extra.items():
            summary["methods"][name].update(fields)
        summary["settings"], summary["notes"] = settings, notes
        return summary

    def write(
        self,
        out: Path,
        records: Mapping[str, Sequence[Any]],
        summary: dict[str, Any],
        extra: Mapping[str, Mapping[str, Any]],
        folders: Mapping[str, Path],
        config: "EvalConfig",
    ) -> dict[str, Any]:
        """[`EvalTask.write`][rewardkit.evaluation.tasks.EvalTask.write]."""
        _write_cases(out, records, summary, self.table(summary), summary["notes"], config.plots)
        return summary

    def table(self, summary: Mapping[str, Any]) -> str:
        """[`EvalTask.table`][rewardkit.evaluation.tasks.EvalTask.table]."""
        return cases_table(summary)


# --------------------------------------------------------------------------- helpers


def _match(
    items: Sequence[Any], positions: Mapping[int, int], found: Mapping[int, Path], *, faithful: bool
) -> tuple[list[tuple[Any, Path]], list[int]]:
    """Pair items with their images; return the pairs and the indices without an image.

    The default keys images by the ``index`` field. ``faithful`` reproduces the reference
    scripts, which looked up ``metadata[int(stem)]``: image ``k.png`` is scored against the item
    at list position ``k``, whatever its ``index``.
    """
    pairs, missing = [], []
    for item in items:
        key = positions[item.index] if faithful else item.index
        if key in found:
            pairs.append((item, found[key]))
        else:
            missing.append(item.index)
    return pairs, missing


def _is_stand_in(encoder: "EncoderSpec | str | ImageEncoder") -> bool:
    if isinstance(encoder, EncoderSpec | str):
        name = encoder.name if isinstance(encoder, EncoderSpec) else encoder.partition("=")[0].split(",")[0]
        return name in STAND_INS
    return encoder.name.startswith("effnet")  # a built offline encoder (effnet-pooled / -flat / -gram)


class _ObjectiveScorer:
    """Scores one image of one instance with the registered metrics that ``config.metrics`` selects.

    The shared models are loaded once, before the first image (see
    [`metric_registry`][rewardkit.evaluation.metric_registry]).
    """

    def __init__(self, bench: Benchmark, config: "EvalConfig") -> None:
        self.bench = bench
        self.config = config
        selected = set(config.metrics)
        self.specs = [get_metric(name) for name in list_metrics() if name in selected]
        self.resources = Resources(bench, config)
        for name in dict.fromkeys(need for spec in self.specs for need in spec.needs):
            self.resources.get(name)

    def score(self, inst: BenchInstance, image: NDArray[np.uint8]) -> InstanceScores:
        ctx = MetricContext(inst, image, self.bench, self.config, self.resources)
        failures: dict[str, int] = {}
        details: dict[str, dict[str, float]] = {}
        objective: dict[str, float] = {}
        custom: dict[str, float] = {}
        clip: tuple[float, ...] = ()
        dino: tuple[float, ...] = ()
        for spec in self.specs:
            if not spec.applies(inst):
                continue
            result = spec.fn(ctx)
            if spec.name == "subject":
                clip, dino = result.subject_clip, result.subject_dino
            elif result.value is not None:
                (objective if spec.name in METRICS else custom)[spec.name] = float(result.value)
            if result.details is not None:
                details[spec.name] = dict(result.details)
            failures.update(result.failures)
        return InstanceScores(
            inst.index,
            inst.n_refs,
            inst.category,
            clip,
            dino,
            objective,
            {},
            failures,
            details,
            custom=custom,
        )


def _reward_reference(bench: Benchmark, ref: Any) -> Any:
    from rewardkit.rewards.protocol import Reference as RewardReference

    kind = ref.type  # pose skeletons and pose images are both "pose"
    return RewardReference(to_tensor(load_rgb(bench.resolve(ref.path))), kind, ref.subject_name or "")


def _judge_omniref(
    bench: Benchmark,
    pairs: Sequence[tuple[BenchInstance, Path]],
    records: list[InstanceScores],
    judge: Any,
    progress: bool,
) -> list[InstanceScores]:
    from tqdm import tqdm

    from rewardkit.rewards.protocol import SampleContext

    out: list[InstanceScores] = []
    bar = tqdm(total=len(pairs), desc="MLLM judge", unit="img", disable=not progress)
    for start in range(0, len(pairs), _JUDGE_CHUNK):
        chunk = pairs[start : start + _JUDGE_CHUNK]
        images = [to_tensor(load_rgb(path)) for _, path in chunk]
        contexts = [
            SampleContext(
                prompt=inst.prompt,
                references=tuple(_reward_reference(bench, r) for r in inst.references),
                metadata={"index": inst.index, "category": inst.category},
            )
            for inst, _ in chunk
        ]
        result = judge(images, contexts)
        for i, record in enumerate(records[start : start + len(chunk)]):
            mllm = {
                d: float(result.extras[d][i])
                for d in MLLM_DIMENSIONS
                if math.isfinite(float(result.extras[d][i]))
            }
            failures = dict(record.failures)
            if float(result.extras["judge_ok"][i]) < 1:
                failures["judge"] = 1
            out.append(dataclasses.replace(record, mllm=mllm, failures=failures))
        bar.update(len(chunk))
    bar.close()
    return out


def _case_judge(cases: CaseSet, config: "EvalConfig") -> Any:
    settings = config.judge
    if settings is None:
        raise ValueError(
            f"{cases.kind} cases are scored by an MLLM judge: pass judge=JudgeSettings(base_url=..., "
            "model=...) (CLI: --judge-url and --judge-model)"
        )
    client = settings.build_client(faithful=config.faithful)
    if cases.kind == "dual_ref":
        from rewardkit.rewards.judges import DualRefJudge

        return DualRefJudge(client)
    from rewardkit.rewards.judges import WeightedRefVIEScore

    return WeightedRefVIEScore(client, face_similarity=settings.face_similarity)


def _score_cases(
    cases: CaseSet, pairs: Sequence[tuple[Any, Path]], judge: Any, config: "EvalConfig"
) -> list[CaseScore]:
    from tqdm import tqdm

    from rewardkit.evaluation.cases import COMPONENTS
    from rewardkit.rewards.protocol import Reference as RewardReference
    from rewardkit.rewards.protocol import SampleContext

    faces_as_objects = config.judge is not None and config.judge.faces_as_objects
    out: list[CaseScore] = []
    bar = tqdm(total=len(pairs), desc=f"{cases.kind} judge", unit="img", disable=not config.progress)
    for start in range(0, len(pairs), _JUDGE_CHUNK):
        chunk = pairs[start : start + _JUDGE_CHUNK]
        contexts = []
        for case, _ in chunk:
            if isinstance(case, MicoCase):
                refs = tuple(
                    RewardReference(
                        to_tensor(load_rgb(cases.resolve(s.path))),
                        "subject",
                        s.name,
                        is_face=s.is_face and not faces_as_objects,
                    )
                    for s in case.sources
                )
                target = (to_tensor(load_rgb(cases.resolve(case.reference))),)
                contexts.append(SampleContext(prompt=case.prompt, targets=target, references=refs))
            else:
                refs = tuple(
                    RewardReference(to_tensor(load_rgb(p)), "subject") for p in cases.input_paths(case)
                )
                contexts.append(SampleContext(prompt=case.prompt, references=refs))
        result = judge([to_tensor(load_rgb(path)) for _, path in chunk], contexts)
        for i, (case, _) in enumerate(chunk):
            score = float(result.scores[i])
            components = {
                c: float(result.extras[c][i])
                for c in COMPONENTS[cases.kind]
                if c in result.extras and math.isfinite(float(result.extras[c][i]))
            }
            out.append(CaseScore(case.index, case.group, score if math.isfinite(score) else None, components))
        bar.update(len(chunk))
    bar.close()
    return out


def _write_cases(
    out: Path,
    records: Mapping[str, Sequence[CaseScore]],
    summary: dict[str, Any],
    table: str,
    notes: Sequence[str],
    plots: bool,
) -> None:

    out.mkdir(parents=True, exist_ok=True)
    for name, rows in records.items():
        (out / f"scores_{name}.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in rows))
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    title = {
        "mico": "MICo-style cases: Weighted-Ref-VIEScore (0–100)",
        "dual_ref": "Dual-reference cases: yes/no judge (0–1)",
    }[summary["benchmark"]]
    text = f"# Evaluation\n\n{title}\n\n{table}"
    if notes:
        text += "\n## Notes\n\n" + "".join(f"- {n}\n" for n in notes)
    text += "\n## Settings\n\n```json\n" + json.dumps(summary["settings"], indent=2) + "\n```\n"
    (out / "report.md").write_text(text, encoding="utf-8")
    if plots:
        plot_cases(summary, out / "scores_by_group.png")
