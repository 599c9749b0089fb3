"""The OmniRef evaluation task: OmniRef-Bench metadata and OmniRef-mini.

Registered per-image metrics ([`metric_registry`][rewardkit.evaluation.metric_registry]),
target fidelity where the instances carry targets, and the six-dimension MLLM judge.
"""

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from rewardkit.evaluation._images import load_rgb, to_tensor
from rewardkit.evaluation.benchmark import METRICS, BenchInstance, Benchmark
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
from rewardkit.evaluation.tasks import JUDGE_CHUNK, Pairs, match_images

if TYPE_CHECKING:
    from rewardkit.evaluation.config import EvalConfig
    from rewardkit.rewards.encoders import ImageEncoder

__all__ = ["OmniRefTask"]

logger = logging.getLogger("rewardkit.evaluation")


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
        return match_images(self.items, positions, found, faithful=faithful)

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
    for start in range(0, len(pairs), JUDGE_CHUNK):
        chunk = pairs[start : start + JUDGE_CHUNK]
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
