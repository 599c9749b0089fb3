"""What [`evaluate`][rewardkit.evaluate] takes and returns: runs, judge, config and report.

Everything here is re-exported by [`pipeline`][rewardkit.evaluation.pipeline] (and the main ones
by ``rewardkit`` and ``rewardkit.evaluation``).
"""

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from rewardkit.evaluation.benchmark import METRICS
from rewardkit.evaluation.generation import GenerationSettings
from rewardkit.evaluation.metric_registry import list_metrics
from rewardkit.evaluation.metrics import CROP_PADDING, EncoderSpec
from rewardkit.rewards.encoders import ImageEncoder

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "OFFLINE_SIMILARITY",
    "OFFLINE_STYLE",
    "EncoderLike",
    "EvalConfig",
    "EvalReport",
    "JudgeSettings",
    "Run",
]

#: Everything ``metrics=`` accepts: the five objective metrics, target fidelity and the MLLM judge.
ALL_METRICS: Final[tuple[str, ...]] = (*METRICS, "fidelity", "mllm")
#: What ``metrics=`` defaults to: the objective metrics and target fidelity (no judge).
DEFAULT_METRICS: Final[tuple[str, ...]] = (*METRICS, "fidelity")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

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
