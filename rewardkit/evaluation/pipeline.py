"""One call from image folders (or backbones to generate with) to the paper's table and plots.

[`evaluate`][rewardkit.evaluate] takes named runs — folders of ``{index}.png`` and/or a backbone
with an optional LoRA to generate them — and a benchmark, and scores every run:

* **OmniRef-Bench** metadata (or OmniRef-mini): the five objective metrics and, with a judge,
  the six MLLM dimensions, aggregated as the paper's Tab. 2 and by number of references; when
  the instances carry ground-truth targets, also target fidelity (PSNR, SSIM, an LPIPS-style
  distance), the diversity of each run's images against the targets' with a collapse warning,
  and a contact sheet;
* **MICo-Bench-style** cases: Weighted-Ref-VIEScore (seed 004);
* **dual-reference** cases: the three-question yes/no judge (seed 003).

With ``out_dir`` it writes ``scores_<run>.jsonl``, ``summary.json``, ``report.md``, PNG plots and
(with targets) ``contact_sheet.png``.
Every model is loaded once and shared by the runs; reference features are computed once.
"""

import dataclasses
import gc
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import torch
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
from rewardkit.evaluation.generation import GenerationItem, GenerationSettings, find_images, generate_images
from rewardkit.evaluation.metric_registry import MetricContext, Resources, get_metric, list_metrics
from rewardkit.evaluation.metrics import CROP_PADDING, STAND_INS, EncoderSpec
from rewardkit.evaluation.report import MLLM_DIMENSIONS, InstanceScores, summarize, write_summary
from rewardkit.rewards.encoders import ImageEncoder

__all__ = ["ALL_METRICS", "DEFAULT_METRICS", "EvalConfig", "EvalReport", "JudgeSettings", "Run", "evaluate"]

logger = logging.getLogger("rewardkit.evaluation")

#: Everything ``metrics=`` accepts: the five objective metrics, target fidelity and the MLLM judge.
ALL_METRICS: Final[tuple[str, ...]] = (*METRICS, "fidelity", "mllm")
#: What ``metrics=`` defaults to: the objective metrics and target fidelity (no judge).
DEFAULT_METRICS: Final[tuple[str, ...]] = (*METRICS, "fidelity")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_JUDGE_CHUNK: Final[int] = 16  # images per judge batch (bounds the memory of encoded requests)

EncoderLike = EncoderSpec | str | ImageEncoder
#: The default (offline stand-in) encoders.
OFFLINE_SIMILARITY: Final[EncoderSpec] = EncoderSpec("offline_similarity")
OFFLINE_STYLE: Final[EncoderSpec] = EncoderSpec("offline_style")


@dataclass(frozen=True)
class Run:
    """One method to evaluate.

    Attributes:
        name: a short name (letters, digits, ``_ . + -``); rows of the table and file names.
        images: folder of ``{index}.png`` images; with ``backbone`` it is where generated
            images go (default ``<out_dir>/images/<name>``).
        backbone: a registered backbone ([`list_backbones`][rewardkit.list_backbones]) to
            generate the images with; images already in the folder are kept (resumable).
        checkpoint: the backbone's weights (local directory or hub id).
        lora: optional LoRA adapter directory loaded on the backbone.
        options: extra [`load_backbone`][rewardkit.load_backbone] options (``device``,
            ``dtype``, ``resolution``, ...).
    """

    name: str
    images: str | Path | None = None
    backbone: str | None = None
    checkpoint: str | Path | None = None
    lora: str | Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                f"run name must be letters, digits and _ . + - (it names files), got {self.name!r}"
            )
        if self.images is None and self.backbone is None:
            raise ValueError(f"run {self.name!r}: give images= (a folder) or backbone= and checkpoint=")
        if (self.backbone is None) != (self.checkpoint is None):
            raise ValueError(f"run {self.name!r}: backbone= and checkpoint= go together")
        if self.lora is not None and self.backbone is None:
            raise ValueError(f"run {self.name!r}: lora= needs backbone= and checkpoint=")


@dataclass(frozen=True)
class JudgeSettings:
    """The MLLM judge (any OpenAI-compatible chat-completions endpoint).

    Attributes:
        base_url: e.g. ``"http://127.0.0.1:8000/v1"`` (env ``REWARDKIT_JUDGE_BASE_URL`` /
            ``OPENAI_BASE_URL``). The API key comes only from the environment
            (``REWARDKIT_JUDGE_API_KEY`` / ``OPENAI_API_KEY``).
        model: model name (env ``REWARDKIT_JUDGE_MODEL``; the paper used ``gemini-3-flash``).
        cache_dir: on-disk answer cache; a rerun costs nothing.
        temperature: ``None`` → 0 (default) or 0.9 (``faithful``, the reference script's).
        applicability: which OmniRef dimensions count for an image: ``"metadata"`` (from its
            reference types) or ``"model"`` (trust the judge's −1, as the script did);
            ``None`` → ``"metadata"``, or ``"model"`` when ``faithful``.
        max_concurrency: requests in flight.
        timeout: seconds per attempt.
        max_retries: retries of 429 / 5xx / timeouts.
        client: a ready [`ChatClient`][rewardkit.ChatClient] instead of the fields above.
        face_similarity: MICo face sources: ``f(source, generated) -> best-match cosine``
            (e.g. ArcFace); required when a case has face sources, unless ``faces_as_objects``.
        faces_as_objects: judge face sources with the VLM yes/no like other sources (a
            deviation from MICo, recorded in the report).
    """

    base_url: str | None = None
    model: str | None = None
    cache_dir: str | Path | None = None
    temperature: float | None = None
    applicability: Literal["metadata", "model"] | None = None
    max_concurrency: int = 4
    timeout: float = 120.0
    max_retries: int = 4
    client: Any = None
    face_similarity: Callable[..., float] | None = None
    faces_as_objects: bool = False

    def build_client(self, *, faithful: bool) -> Any:
        """The [`ChatClient`][rewardkit.ChatClient] (``client`` if given)."""
        if self.client is not None:
            return self.client
        from rewardkit.rewards.judges import ChatClient

        temperature = self.temperature if self.temperature is not None else (0.9 if faithful else 0.0)
        return ChatClient(
            base_url=self.base_url,
            model=self.model,
            cache_dir=self.cache_dir,
            temperature=temperature,
            max_concurrency=self.max_concurrency,
            timeout=self.timeout,
            max_retries=self.max_retries,
        )


@dataclass(frozen=True)
class EvalConfig:
    """What to compute and with which models (defaults run offline).

    Attributes:
        metrics: any of ``subject, style, background, lighting, pose, fidelity, mllm`` (OmniRef
            only; MICo and dual-reference cases always use their judge). ``fidelity`` (on by
            default) compares images with the instances' targets, when they have any: PSNR,
            SSIM, perceptual distance, diversity and the collapse warning.
        faithful: reproduce the reference scripts' deterministic quirks (see the docs' table):
            BGR subject crops, channel-swapped background images, images matched to metadata
            by list position, the lighting grid and rounding, pose alignment on all 17 points,
            ``_skeleton`` in pose captions, person-found-without-keypoints dropped from pose,
            judge temperature 0.9 trusting its −1.
        clip: CLIP-I encoder of the subject metric.
        dino: DINOv2 encoder of the subject metric.
        background: encoder of the background metric (``None`` → ``clip``).
        style: style encoder (CSD).
        detector: subject detector: a [`DETECTORS`][rewardkit.evaluation.providers.DETECTORS]
            name, ``"module:attr"`` or an object.
        detector_options: options of the detector factory (e.g. ``{"model": path}``).
        masks: foreground-mask provider (name, ``"module:attr"`` or object).
        keypoints: keypoint provider (name, ``"module:attr"`` or object).
        crop_padding: subject crop padding in pixels.
        device: where encoders run (``None`` → CUDA if available).
        judge: the MLLM judge (needed for ``"mllm"`` and for MICo / dual-reference cases).
        generation: sampling settings of runs with a backbone.
        overwrite: regenerate images that already exist.
        allow_missing: evaluate the images present when some are missing (counted in the
            summary) instead of stopping.
        limit: evaluate only the first ``limit`` benchmark items.
        plots: write the PNG plots.
        progress: show progress bars.
        collapse_threshold: warn when a run's diversity is below this fraction of the targets'
            diversity on the same instances (the ``diversity_ratio``).
        collapse_drop: warn when a run's diversity is below this fraction of the previous
            run's (runs are ordered, e.g. base → sft → rl).
    """

    metrics: tuple[str, ...] = DEFAULT_METRICS
    faithful: bool = False
    clip: EncoderLike = OFFLINE_SIMILARITY
    dino: EncoderLike = OFFLINE_SIMILARITY
    background: EncoderLike | None = None
    style: EncoderLike = OFFLINE_STYLE
    detector: Any = "ground_truth"
    detector_options: Mapping[str, Any] = field(default_factory=dict)
    masks: Any = "box"
    keypoints: Any = "ground_truth"
    crop_padding: int = CROP_PADDING
    device: str | None = None
    judge: JudgeSettings | None = None
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    overwrite: bool = False
    allow_missing: bool = False
    limit: int | None = None
    plots: bool = True
    progress: bool = True
    collapse_threshold: float = 0.5
    collapse_drop: float = 0.8

    def __post_init__(self) -> None:
        metrics = tuple(self.metrics)
        known = (*ALL_METRICS, *(m for m in list_metrics() if m not in ALL_METRICS))
        unknown = [m for m in metrics if m not in known]
        if unknown or not metrics:
            raise ValueError(f"metrics must be a non-empty subset of {known}, got {list(metrics)}")
        object.__setattr__(self, "metrics", metrics)
        if self.limit is not None and (isinstance(self.limit, bool) or self.limit < 1):
            raise ValueError(f"limit must be None or an int >= 1, got {self.limit!r}")
        if self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {self.crop_padding}")
        for name in ("collapse_threshold", "collapse_drop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class EvalReport:
    """What [`evaluate`][rewardkit.evaluate] returns.

    Attributes:
        summary: the ``summary.json`` dict (per run: scores per type and their averages, MLLM
            dimensions, by number of references, failures; or the case benchmarks' scores).
        records: per run, the per-image records (``InstanceScores`` or ``CaseScore``).
        table: the Markdown table (Tab. 2 layout for OmniRef).
        out_dir: where the files were written, if anywhere.
    """

    summary: dict[str, Any]
    records: dict[str, list[Any]]
    table: str
    out_dir: Path | None = None


# --------------------------------------------------------------------------- helpers


def _load_any(benchmark: Any, root: str | Path | None, limit: int | None) -> Benchmark | CaseSet:
    if isinstance(benchmark, Benchmark | CaseSet):
        loaded: Benchmark | CaseSet = benchmark
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
    return loaded


def _runs(runs: Any) -> list[Run]:
    if isinstance(runs, str | Path):
        return [Run("model", images=runs)]
    if isinstance(runs, Mapping):
        out = [v if isinstance(v, Run) else Run(str(k), images=v) for k, v in runs.items()]
    elif isinstance(runs, Iterable):
        out = list(runs)
    else:
        raise TypeError(f"runs must be a folder, a {{name: folder}} mapping or a list of Run, got {runs!r}")
    if not out or not all(isinstance(r, Run) for r in out):
        raise ValueError("runs must name at least one run (a folder, {name: folder}, or Run objects)")
    names = [r.name for r in out]
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be unique, got {names}")
    return out


def _generation_items(bench: Benchmark | CaseSet) -> list[GenerationItem]:
    if isinstance(bench, CaseSet):
        return bench.generation_items()
    return [
        GenerationItem(inst.index, inst.prompt, tuple(bench.resolve(r.path) for r in inst.references))
        for inst in bench
    ]


def _prepare_images(run: Run, bench: Benchmark | CaseSet, out_dir: Path | None, config: EvalConfig) -> Path:
    if run.backbone is None:
        assert run.images is not None
        return Path(run.images)
    if run.images is None and out_dir is None:
        raise ValueError(f"run {run.name!r} generates images: give it images= a folder, or pass out_dir=")
    folder = Path(run.images) if run.images is not None else Path(out_dir or ".") / "images" / run.name
    items = _generation_items(bench)
    done = find_images(folder) if folder.is_dir() else {}
    if not config.overwrite and all(it.index in done for it in items):
        return folder  # nothing to generate: do not even load the model
    from rewardkit.backbone.registry import load_backbone

    options = dict(run.options)
    if run.lora is not None:
        options["adapter"] = str(run.lora)
    backbone = load_backbone(run.backbone, str(run.checkpoint), **options)
    describe = {"checkpoint": str(run.checkpoint), "lora": None if run.lora is None else str(run.lora)}
    generate_images(
        backbone,
        items,
        folder,
        settings=config.generation,
        overwrite=config.overwrite,
        progress=config.progress,
        describe=describe,
    )
    del backbone
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return folder


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


def _describe(encoder: EncoderLike) -> str:
    return str(encoder) if isinstance(encoder, EncoderSpec | str) else f"<{encoder.name}>"


def _is_stand_in(encoder: EncoderLike) -> bool:
    if isinstance(encoder, EncoderSpec | str):
        name = encoder.name if isinstance(encoder, EncoderSpec) else encoder.partition("=")[0].split(",")[0]
        return name in STAND_INS
    return encoder.name.startswith("effnet")  # a built offline encoder (effnet-pooled / -flat / -gram)


# --------------------------------------------------------------------------- objective scoring


class _ObjectiveScorer:
    """Scores one image of one instance with the registered metrics that ``config.metrics`` selects.

    The shared models are loaded once, before the first image (see
    [`metric_registry`][rewardkit.evaluation.metric_registry]).
    """

    def __init__(self, bench: Benchmark, config: EvalConfig) -> None:
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


# --------------------------------------------------------------------------- case benchmarks


def _case_judge(cases: CaseSet, config: EvalConfig) -> Any:
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
    cases: CaseSet, pairs: Sequence[tuple[Any, Path]], judge: Any, config: EvalConfig
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


# --------------------------------------------------------------------------- evaluate


def _settings(
    bench: Benchmark | CaseSet,
    runs: Sequence[Run],
    folders: Mapping[str, Path],
    config: EvalConfig,
    source: Any,
) -> tuple[dict[str, Any], list[str]]:
    import rewardkit

    settings: dict[str, Any] = {
        "benchmark": str(source) if isinstance(source, str | Path) else type(source).__name__,
        "format": "omniref" if isinstance(bench, Benchmark) else bench.kind,
        "items": len(bench.instances) if isinstance(bench, Benchmark) else len(bench.cases),
        "mode": "faithful" if config.faithful else "default",
        "versions": {"rewardkit": rewardkit.__version__, "torch": torch.__version__},
        "runs": {
            r.name: {
                "images": str(folders[r.name]),
                **(
                    {
                        "backbone": r.backbone,
                        "checkpoint": str(r.checkpoint),
                        "lora": None if r.lora is None else str(r.lora),
                        "generation": config.generation.to_json(),
                    }
                    if r.backbone is not None
                    else {}
                ),
            }
            for r in runs
        },
    }
    notes: list[str] = []
    if config.faithful:
        notes.append("faithful mode: the reference scripts' deterministic quirks are reproduced")
    if isinstance(bench, Benchmark):
        metrics = [m for m in config.metrics if m != "mllm" or config.judge is not None]
        settings["metrics"] = metrics
        background = config.background if config.background is not None else config.clip
        encoders = {"clip": config.clip, "dino": config.dino, "style": config.style, "background": background}
        settings["encoders"] = {k: _describe(v) for k, v in encoders.items()}
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
    if config.judge is not None and (isinstance(bench, CaseSet) or "mllm" in config.metrics):
        client = config.judge.build_client(faithful=config.faithful)
        settings["judge"] = {
            "model": client.config.model,
            "base_url": client.config.base_url,
            "temperature": client.config.temperature,
            "applicability": config.judge.applicability or ("model" if config.faithful else "metadata"),
        }
        notes.append(
            "judge prompts are rewardkit's own wording (reconstructions, not the authors' templates)"
        )
        if config.judge.faces_as_objects:
            notes.append("MICo face sources were judged with the VLM yes/no instead of a face similarity")
    return settings, notes


def evaluate(
    runs: Any,
    benchmark: Any,
    *,
    out_dir: str | Path | None = None,
    root: str | Path | None = None,
    config: EvalConfig | None = None,
    **options: Any,
) -> EvalReport:
    """Evaluate one or several methods on a benchmark; optionally write the report files.

    Args:
        runs: a folder of ``{index}.png``; ``{name: folder}``; or a list of
            [`Run`][rewardkit.evaluation.pipeline.Run] (folders and/or backbone + LoRA to generate).
        benchmark: an OmniRef-Bench metadata file, a MICo-style or dual-reference cases file
            (the format is detected), or a loaded ``Benchmark`` / ``CaseSet``.
        out_dir: where to write ``scores_<run>.jsonl``, ``summary.json``, ``report.md``, the
            plots, ``contact_sheet.png`` (when the instances have targets; see
            [`contact_sheet`][rewardkit.evaluation.contact_sheet.contact_sheet]) and generated
            images (``images/<run>/``); ``None`` writes nothing (runs that generate then need
            ``Run(images=...)``).
        root: folder the benchmark's paths are relative to (default: the file's folder).
        config: an [`EvalConfig`][rewardkit.evaluation.pipeline.EvalConfig].
        **options: [`EvalConfig`][rewardkit.evaluation.pipeline.EvalConfig] fields overriding
            ``config`` (``metrics=``, ``faithful=``, ``judge=``, ...).

    Returns:
        An [`EvalReport`][rewardkit.evaluation.pipeline.EvalReport]. With targets and the
        ``fidelity`` metric, each image's record has ``psnr``, ``ssim`` and ``perceptual``, each
        run's summary a ``fidelity`` block, and ``summary["warnings"]`` lists collapse warnings
        (a run's diversity below ``collapse_threshold`` × the targets', or below
        ``collapse_drop`` × the previous run's); they are also logged and head ``report.md``.

    Raises:
        ValueError: bad runs or options; images missing for some items (unless
            ``allow_missing``); a judge-scored benchmark or ``"mllm"`` without a judge.
        FileNotFoundError: a missing benchmark file, image folder or reference.

    Example:
        ``evaluate({"base": "out/base", "rl": "out/rl"}, "OmniRef-Bench/metadata.json",
        out_dir="report", clip=EncoderSpec("clip", "/models/clip-vit-base-patch16"))``
    """
    cfg = dataclasses.replace(config or EvalConfig(), **options)
    run_list = _runs(runs)
    bench = _load_any(benchmark, root, cfg.limit)
    out = Path(out_dir) if out_dir is not None else None
    if "mllm" in cfg.metrics and cfg.judge is None and isinstance(bench, Benchmark):
        raise ValueError("metrics include 'mllm' but no judge was given: pass judge=JudgeSettings(...)")

    folders = {run.name: _prepare_images(run, bench, out, cfg) for run in run_list}
    items: Sequence[Any] = bench.instances if isinstance(bench, Benchmark) else bench.cases
    positions = {item.index: k for k, item in enumerate(items)}
    matched: dict[str, list[tuple[Any, Path]]] = {}
    extra: dict[str, dict[str, Any]] = {}
    for run in run_list:
        by_position = cfg.faithful and isinstance(bench, Benchmark)  # the OmniRef scripts' quirk only
        pairs, missing = _match(items, positions, find_images(folders[run.name]), faithful=by_position)
        if missing and not cfg.allow_missing:
            raise ValueError(
                f"run {run.name!r}: {len(missing)} of {len(items)} images are missing in "
                f"{folders[run.name]} (indices {missing[:10]}{' ...' if len(missing) > 10 else ''}); "
                "generate them, or pass allow_missing=True (--allow-missing) to score the rest"
            )
        if missing:
            logger.warning("run %s: %d image(s) missing, scoring the rest", run.name, len(missing))
        matched[run.name] = pairs
        extra[run.name] = {"missing_images": missing}

    settings, notes = _settings(bench, run_list, folders, cfg, benchmark)
    records: dict[str, list[Any]] = {}
    if isinstance(bench, CaseSet):
        judge = _case_judge(bench, cfg)
        for run in run_list:
            records[run.name] = _score_cases(bench, matched[run.name], judge, cfg)
        summary = summarize_cases(bench.kind, records)
        for name, fields in extra.items():
            summary["methods"][name].update(fields)
        summary["settings"], summary["notes"] = settings, notes
        table = cases_table(summary)
        if out is not None:
            _write_cases(out, records, summary, table, notes, cfg.plots)
        return EvalReport(summary, records, table, out)

    scorer = _ObjectiveScorer(bench, cfg) if set(cfg.metrics) & set(list_metrics()) else None
    judge = None
    if "mllm" in cfg.metrics:
        from rewardkit.rewards.judges import OmniRefJudge

        assert cfg.judge is not None
        applicability = cfg.judge.applicability or ("model" if cfg.faithful else "metadata")
        judge = OmniRefJudge(cfg.judge.build_client(faithful=cfg.faithful), applicability=applicability)
    has_targets = any(inst.target is not None for inst in bench)
    fidelity = FidelityScorer(bench, device=cfg.device) if "fidelity" in cfg.metrics and has_targets else None
    if fidelity is not None and fidelity.note is not None:
        notes.append(fidelity.note)
    from tqdm import tqdm

    diversities: dict[str, dict[str, float | None]] = {}
    for run in run_list:
        pairs = matched[run.name]
        run_records = []
        for inst, path in tqdm(pairs, desc=f"scoring {run.name}", unit="img", disable=not cfg.progress):
            # faithful: the scripts read generated images with cv2.imread
            image = (
                load_rgb(path, opencv_decoder=cfg.faithful)
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
            run_records, diversities[run.name] = fidelity.finish(run_records)
        if judge is not None:
            run_records = _judge_omniref(bench, pairs, run_records, judge, cfg.progress)
        records[run.name] = run_records

    warnings = collapse_warnings(diversities, threshold=cfg.collapse_threshold, drop=cfg.collapse_drop)
    for message in warnings:
        logger.warning("%s", message)
    if out is not None:
        summary = write_summary(
            records,
            out,
            plots=cfg.plots,
            settings=settings,
            notes=notes,
            extra=extra,
            diversity=diversities,
            warnings=warnings,
        )
        if has_targets:
            contact_sheet(bench, folders, out / "contact_sheet.png")
    else:
        summary = summarize(records, diversity=diversities)
        for name, fields in extra.items():
            summary["methods"][name].update(fields)
        summary["warnings"] = warnings
        summary["settings"], summary["notes"] = settings, notes
    from rewardkit.evaluation.report import markdown_table

    return EvalReport(summary, records, markdown_table(summary), out)


def _write_cases(
    out: Path,
    records: Mapping[str, Sequence[CaseScore]],
    summary: dict[str, Any],
    table: str,
    notes: Sequence[str],
    plots: bool,
) -> None:
    import json

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
