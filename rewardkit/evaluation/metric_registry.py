"""Per-image metrics of OmniRef-style benchmarks by name: one function and one registration each.

A metric is a function of a [`MetricContext`][rewardkit.evaluation.metric_registry.MetricContext]
(the instance, the generated image, the shared models) returning a
[`MetricOutput`][rewardkit.evaluation.metric_registry.MetricOutput];
[`register_metric`][rewardkit.evaluation.metric_registry.register_metric] makes it selectable as
``metrics=(..., name)`` in [`evaluate`][rewardkit.evaluate]. The five objective metrics of the
paper (``subject, style, background, lighting, pose``) are registered the same way in
[`objective_metrics`][rewardkit.evaluation.objective_metrics]; a metric registered from outside
is reported under ``"custom"`` (JSONL record, ``summary.json`` and a table in ``report.md``).

Example:
    ```python
    from rewardkit.evaluation.metric_registry import MetricOutput, register_metric

    def brightness(ctx):
        return MetricOutput(value=float(ctx.image.mean()) / 255)

    register_metric("brightness", brightness)
    rewardkit.evaluate(runs, "metadata.json", metrics=("subject", "brightness"))
    ```
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rewardkit.evaluation.benchmark import BenchInstance, Benchmark
from rewardkit.evaluation.metrics import CachedEncoder, EncoderSpec, load_eval_encoder
from rewardkit.evaluation.providers import load_provider

__all__ = [
    "MetricContext",
    "MetricOutput",
    "MetricSpec",
    "Resources",
    "describe_encoder",
    "get_metric",
    "list_metrics",
    "register_metric",
    "unregister_metric",
]


@dataclass(frozen=True)
class MetricOutput:
    """What a metric found for one image.

    Attributes:
        value: the image's score (``None``: none, e.g. a dropped image; the metric is then
            not counted for this image).
        details: sub-scores written to the JSONL record under ``details[name]``.
        failures: counts of what went wrong (summed per run in ``summary.json``).
        subject_clip: per-subject CLIP-I cosines (the built-in ``subject`` metric only).
        subject_dino: per-subject DINOv2 cosines (the built-in ``subject`` metric only).
    """

    value: float | None = None
    details: Mapping[str, float] | None = None
    failures: Mapping[str, int] = field(default_factory=dict)
    subject_clip: tuple[float, ...] = ()
    subject_dino: tuple[float, ...] = ()


Metric = Callable[["MetricContext"], MetricOutput]


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: its function, when it applies and which shared models it needs."""

    name: str
    fn: Metric
    applies: Callable[[BenchInstance], bool]
    needs: tuple[str, ...] = ()


_REGISTRY: dict[str, MetricSpec] = {}


def _always(inst: BenchInstance) -> bool:
    return True


def register_metric(
    name: str,
    fn: Metric,
    *,
    applies: Callable[[BenchInstance], bool] | None = None,
    needs: tuple[str, ...] = (),
    replace: bool = False,
) -> MetricSpec:
    """Make ``fn`` selectable as ``metrics=(..., name)``.

    Args:
        name: the metric's name (in ``metrics=``, the JSONL and ``summary.json``).
        fn: ``fn(ctx: MetricContext) -> MetricOutput``, called once per image it applies to.
        applies: ``applies(instance) -> bool`` (default: every instance).
        needs: shared models loaded once before scoring (``clip``, ``dino``, ``background``,
            ``style``, ``detector``, ``masks``, ``keypoints``); ``ctx.resources`` also loads
            them on first use.
        replace: allow replacing a registered metric of the same name.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a metric name must be an identifier, got {name!r}")
    if name in ("fidelity", "mllm"):
        raise ValueError(f"{name!r} is a built-in set-level metric and cannot be registered")
    if name in _REGISTRY and not replace:
        raise ValueError(f"metric {name!r} is already registered (pass replace=True)")
    unknown = set(needs) - set(Resources.NAMES)
    if unknown:
        raise ValueError(f"unknown needs {sorted(unknown)}; expected a subset of {Resources.NAMES}")
    spec = MetricSpec(name, fn, applies or _always, tuple(needs))
    _REGISTRY[name] = spec
    return spec


def unregister_metric(name: str) -> None:
    """Remove a registered metric (the built-ins stay)."""
    from rewardkit.evaluation.benchmark import METRICS

    if name in METRICS:
        raise ValueError(f"{name!r} is a built-in metric")
    _REGISTRY.pop(name, None)


def list_metrics() -> tuple[str, ...]:
    """The registered per-image metrics, built-ins first, in scoring order."""
    return tuple(_REGISTRY)


def get_metric(name: str) -> MetricSpec:
    """The registered metric ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; registered: {list(_REGISTRY)}") from None


def describe_encoder(encoder: Any) -> str:
    """How ``summary.json`` names an encoder: its spec, or ``<name>`` for a built object."""
    return str(encoder) if isinstance(encoder, EncoderSpec | str) else f"<{encoder.name}>"


class Resources:
    """The models metrics share, each loaded once per evaluation (encoders also across metrics)."""

    NAMES = ("clip", "dino", "background", "style", "detector", "masks", "keypoints")

    def __init__(self, bench: Benchmark, config: Any) -> None:
        self.bench = bench
        self.config = config
        self._encoders: dict[str, CachedEncoder] = {}
        self._loaded: dict[str, Any] = {}

    def _encoder(self, spec: Any) -> CachedEncoder:
        key = describe_encoder(spec) if isinstance(spec, EncoderSpec | str) else f"id:{id(spec)}"
        if key not in self._encoders:
            options = {"device": self.config.device} if isinstance(spec, EncoderSpec | str) else {}
            self._encoders[key] = CachedEncoder(load_eval_encoder(spec, **options))
        return self._encoders[key]

    def get(self, name: str) -> Any:
        """The model ``name`` (one of ``NAMES``), loaded on first use."""
        if name not in self._loaded:
            cfg = self.config
            if name == "clip":
                value: Any = self._encoder(cfg.clip)
            elif name == "dino":
                value = self._encoder(cfg.dino)
            elif name == "background":
                value = self._encoder(cfg.background if cfg.background is not None else cfg.clip)
            elif name == "style":
                value = self._encoder(cfg.style)
            elif name == "detector":
                value = load_provider(
                    "detector", cfg.detector, benchmark=self.bench, **dict(cfg.detector_options)
                )
            elif name in ("masks", "keypoints"):
                value = load_provider(name, getattr(cfg, name), benchmark=self.bench)
            else:
                raise ValueError(f"unknown resource {name!r}; expected one of {self.NAMES}")
            self._loaded[name] = value
        return self._loaded[name]


class MetricContext:
    """One image of one instance, as a metric sees it.

    Attributes:
        instance: the benchmark instance.
        image: the generated image (H×W×3 uint8 RGB).
        bench: the benchmark (``bench.resolve(path)`` finds reference files).
        config: the [`EvalConfig`][rewardkit.evaluation.pipeline.EvalConfig].
        resources: the shared models (``resources.get("clip")``, ...).
        faithful: ``config.faithful``.
    """

    def __init__(
        self,
        instance: BenchInstance,
        image: NDArray[np.uint8],
        bench: Benchmark,
        config: Any,
        resources: Resources,
    ) -> None:
        self.instance, self.image, self.bench = instance, image, bench
        self.config, self.resources = config, resources
        self.faithful: bool = bool(config.faithful)
        self._boxes: list[Any] | None = None

    def reference(self, kind: str) -> Any:
        """The instance's first reference of ``kind`` (an error when its category lacks one)."""
        refs = self.instance.references_of(kind)
        if not refs:
            raise ValueError(
                f"instance {self.instance.index} ({self.instance.category}) has no {kind} reference "
                f"although its category says so; fix the metadata or drop '{kind}' from metrics"
            )
        return refs[0]

    def boxes(self) -> list[Any]:
        """The subject boxes of the image, one per subject reference (detected once per image)."""
        if self._boxes is None:
            subjects = self.instance.references_of("subject")
            boxes: list[Any] = []
            if subjects:
                detector = self.resources.get("detector")
                boxes = detector.detect(
                    self.image, [r.subject_name or "" for r in subjects], instance=self.instance
                )
                if len(boxes) != len(subjects):
                    raise ValueError(
                        f"detector {type(detector).__name__} returned {len(boxes)} boxes for "
                        f"{len(subjects)} captions (instance {self.instance.index})"
                    )
            self._boxes = boxes
        return self._boxes


from rewardkit.evaluation import objective_metrics as _builtins  # noqa: E402  (registers the five)

del _builtins
