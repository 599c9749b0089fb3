"""Subject detection, foreground masks and pose keypoints behind three small protocols.

The objective metrics need three things they cannot compute from pixels with a formula:

* a [`SubjectDetector`][rewardkit.evaluation.providers.SubjectDetector] gives one box per
  subject caption (subject and background metrics; the reference code used Grounding DINO's
  top-1 box at thresholds 0.35 / 0.25);
* a [`MaskProvider`][rewardkit.evaluation.providers.MaskProvider] turns the boxes into the
  subjects' foreground mask (background metric; the reference used SAM2 box-prompted masks);
* a [`KeypointProvider`][rewardkit.evaluation.providers.KeypointProvider] gives the COCO-17
  keypoints of the posed person (pose metric; the reference used a Grounding DINO crop and
  AlphaPose).

Shipped implementations:

* [`GroundTruthBoxes`][rewardkit.evaluation.providers.GroundTruthBoxes] and
  [`GroundTruthKeypoints`][rewardkit.evaluation.providers.GroundTruthKeypoints] read the
  ``ground_truth.json`` of a synthetic split (OmniRef-mini). Generation is asked for the target
  layout, so the target's boxes are used on generated images too: the subject crops come from
  the *generated* pixels, but the keypoints do not — the keypoint provider is an **oracle** that
  reports the pose the image was asked for, so pose scores made with it check the plumbing and say
  nothing about the model. Both carry ``oracle = True`` and reports say so.
* [`ZeroShotDetector`][rewardkit.evaluation.providers.ZeroShotDetector] wraps any transformers
  zero-shot detection model (Grounding DINO, MM-Grounding-DINO, OWL-ViT, OWLv2) from a local
  directory or a hub id.
* [`BoxMasks`][rewardkit.evaluation.providers.BoxMasks] masks each detected box (the default;
  SAM2-quality masks are a provider away).

A provider is any object with the method (no base class). Registries are plain dicts of
factories called as ``factory(benchmark=..., **options)``; the CLI also accepts
``module:attribute`` for a factory or an instance of your own.
"""

import importlib
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol, TypeAlias, runtime_checkable

import numpy as np
import torch
from numpy.typing import NDArray

from rewardkit.evaluation.benchmark import BenchInstance, Benchmark

__all__ = [
    "DETECTORS",
    "KEYPOINTS",
    "MASKS",
    "BoxMasks",
    "GroundTruthBoxes",
    "GroundTruthKeypoints",
    "KeypointProvider",
    "MaskProvider",
    "SubjectDetector",
    "ZeroShotDetector",
    "load_provider",
]

#: A box ``(x1, y1, x2, y2)`` in pixels of the image it was detected in.
Box: TypeAlias = tuple[float, float, float, float]
Image: TypeAlias = NDArray[np.uint8]


@runtime_checkable
class SubjectDetector(Protocol):
    """Finds each named subject in an image.

    ``detect`` gets an `(H, W, 3)` uint8 RGB image, the subject captions in prompt order (the
    subject reference file stems, e.g. ``"a wild rabbit"``) and the benchmark instance, and
    returns one box per caption: the single best box, or ``None`` when the subject is not found.
    """

    name: str

    def detect(self, image: Image, captions: Sequence[str], *, instance: BenchInstance) -> list[Box | None]:
        """One box (or ``None``) per caption, in pixel coordinates of ``image``."""
        ...


@runtime_checkable
class MaskProvider(Protocol):
    """Turns detected subject boxes into a foreground mask.

    ``foreground`` returns an `(H, W)` bool array, True on subject pixels; missed subjects
    (``None`` boxes) are left unmasked, as in the reference script.
    """

    name: str

    def foreground(
        self, image: Image, boxes: Sequence[Box | None], *, instance: BenchInstance
    ) -> NDArray[np.bool_]:
        """`(H, W)` True where a subject is."""
        ...


@runtime_checkable
class KeypointProvider(Protocol):
    """Finds the posed person in a generated image and returns its COCO-17 keypoints.

    ``keypoints`` returns a `(17, 3)` array of ``(x, y, confidence)`` in pixels of ``image``
    (confidence 0 marks an undetected joint), or ``None`` when no person is found. ``caption``
    is the detector caption the protocol derives from the pose reference's file name.

    A real provider typically chains a person detector and a pose model, e.g.::

        class DetectThenPose:
            name = "my-pose"

            def __init__(self, detector, pose_model):
                self.detector, self.pose_model = detector, pose_model

            def keypoints(self, image, *, instance, caption):
                (box,) = self.detector.detect(image, [caption], instance=instance)
                if box is None:
                    return None                      # scored 0, like a failed crop
                x0, y0 = max(0, int(box[0]) - 10), max(0, int(box[1]) - 10)  # crop origin
                kp = self.pose_model(crop_box(image, box))   # (17, 3) in crop pixels
                return kp + [x0, y0, 0]                      # back to image pixels
    """

    name: str

    def keypoints(self, image: Image, *, instance: BenchInstance, caption: str) -> NDArray[np.float64] | None:
        """`(17, 3)` keypoints or ``None`` (no person)."""
        ...


# --------------------------------------------------------------------------- ground truth


def _ground_truth_file(benchmark: Benchmark, path: str | Path | None) -> dict[str, Any]:
    if benchmark.root is None and path is None:
        raise ValueError("the benchmark has no root folder; pass path= the ground_truth.json file")
    file = Path(path) if path is not None else Path(benchmark.root or ".") / "ground_truth.json"
    if not file.is_file():
        raise FileNotFoundError(
            f"ground-truth file not found: {file}. The ground_truth providers (--detector / --keypoints "
            "ground_truth) need the ground_truth.json that write_omniref_mini writes next to "
            "metadata.json; for real benchmarks pass a detector (--detector zero_shot=MODEL, e.g. "
            "IDEA-Research/grounding-dino-tiny), a keypoint provider (--keypoints MODULE:ATTR), or "
            "leave the metric out of --metrics"
        )
    data = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{file} must hold an object keyed by instance index")
    return data


def _target_sizes(benchmark: Benchmark) -> dict[int, tuple[int, int]]:
    """``index → (height, width)`` of each instance's target image (read from the headers)."""
    from PIL import Image as PILImage

    sizes = {}
    for inst in benchmark:
        if inst.target is not None and benchmark.root is not None:
            path = benchmark.resolve(inst.target)
            if path.is_file():
                with PILImage.open(path) as img:
                    sizes[inst.index] = (img.height, img.width)
    return sizes


def _scale(image: Image, index: int, sizes: Mapping[int, tuple[int, int]]) -> tuple[float, float]:
    """``(sx, sy)`` from target pixels to ``image`` pixels (1 when the target size is unknown)."""
    if index not in sizes:
        return 1.0, 1.0
    th, tw = sizes[index]
    return image.shape[1] / tw, image.shape[0] / th


class GroundTruthBoxes:
    """Subject boxes from a synthetic split's ``ground_truth.json`` (an oracle detector).

    Boxes are the target's, in prompt order; they are rescaled when the image differs in size
    from the target (generation at another resolution keeps the layout).

    Args:
        boxes: ``index → [box per subject]`` in target pixels.
        target_sizes: ``index → (height, width)`` of the targets the boxes refer to.
    """

    name = "ground_truth"
    oracle = True

    def __init__(
        self,
        boxes: Mapping[int, Sequence[Sequence[float]]],
        target_sizes: Mapping[int, tuple[int, int]] | None = None,
    ) -> None:
        self.boxes = {int(k): [tuple(float(v) for v in b) for b in bs] for k, bs in boxes.items()}
        for index, bs in self.boxes.items():
            for b in bs:
                if len(b) != 4:
                    raise ValueError(f"instance {index}: a box must be (x1, y1, x2, y2), got {b}")
        self.target_sizes = dict(target_sizes or {})

    @classmethod
    def from_benchmark(cls, benchmark: Benchmark, path: str | Path | None = None) -> "GroundTruthBoxes":
        """Read ``ground_truth.json`` from the benchmark root (or ``path``)."""
        data = _ground_truth_file(benchmark, path)
        boxes = {int(k): v.get("subject_boxes", []) for k, v in data.items()}
        return cls(boxes, _target_sizes(benchmark))

    def detect(self, image: Image, captions: Sequence[str], *, instance: BenchInstance) -> list[Box | None]:
        """The target's boxes, scaled to ``image``; one per caption (subjects in prompt order)."""
        if instance.index not in self.boxes:
            raise KeyError(f"instance {instance.index} has no ground-truth boxes")
        boxes = self.boxes[instance.index]
        if len(boxes) != len(captions):
            raise ValueError(
                f"instance {instance.index}: {len(captions)} subject caption(s) but {len(boxes)} "
                "ground-truth box(es); the ground truth does not belong to this benchmark"
            )
        sx, sy = _scale(image, instance.index, self.target_sizes)
        return [(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy) for b in boxes]


class GroundTruthKeypoints:
    """The target's pose keypoints from ``ground_truth.json`` (an **oracle**, see the module notes).

    Args:
        keypoints: ``index → (17, 3)`` keypoints in target pixels (``None`` for no person).
        target_sizes: ``index → (height, width)`` of the targets.
    """

    name = "ground_truth"
    oracle = True

    def __init__(
        self,
        keypoints: Mapping[int, Any],
        target_sizes: Mapping[int, tuple[int, int]] | None = None,
    ) -> None:
        self.table: dict[int, NDArray[np.float64] | None] = {}
        for k, v in keypoints.items():
            if v is None:
                self.table[int(k)] = None
                continue
            array = np.asarray(v, dtype=np.float64)
            if array.shape != (17, 3):
                raise ValueError(f"instance {k}: keypoints must be (17, 3), got {array.shape}")
            self.table[int(k)] = array
        self.target_sizes = dict(target_sizes or {})

    @classmethod
    def from_benchmark(cls, benchmark: Benchmark, path: str | Path | None = None) -> "GroundTruthKeypoints":
        """Read ``ground_truth.json`` from the benchmark root (or ``path``)."""
        data = _ground_truth_file(benchmark, path)
        return cls({int(k): v.get("pose_keypoints") for k, v in data.items()}, _target_sizes(benchmark))

    def keypoints(self, image: Image, *, instance: BenchInstance, caption: str) -> NDArray[np.float64] | None:
        """The target's keypoints scaled to ``image`` (``None`` if the target has no person)."""
        kp = self.table.get(instance.index)
        if kp is None:
            return None
        sx, sy = _scale(image, instance.index, self.target_sizes)
        scaled: NDArray[np.float64] = kp * np.array([sx, sy, 1.0])
        return scaled


# --------------------------------------------------------------------------- masks


class BoxMasks:
    """Foreground = the union of the detected boxes (integer-truncated, inclusive, clamped).

    The reference script used SAM2 masks of the same boxes; a box also covers some background
    around the subject, so box-masked background scores compare slightly less of the scene.

    Args:
        pad: pixels added on every side of each box.
    """

    name = "box"

    def __init__(self, *, pad: int = 0) -> None:
        if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
            raise ValueError(f"pad must be an int >= 0, got {pad!r}")
        self.pad = pad

    def foreground(
        self, image: Image, boxes: Sequence[Box | None], *, instance: BenchInstance
    ) -> NDArray[np.bool_]:
        """`(H, W)` True inside any box."""
        h, w = image.shape[:2]
        mask = np.zeros((h, w), dtype=bool)
        for box in boxes:
            if box is None:
                continue  # a missed subject is not masked (reference behaviour)
            x1, y1, x2, y2 = (int(v) for v in box)
            x1, y1 = max(0, x1 - self.pad), max(0, y1 - self.pad)
            x2, y2 = min(w - 1, x2 + self.pad), min(h - 1, y2 + self.pad)
            if x2 >= x1 and y2 >= y1:
                mask[y1 : y2 + 1, x1 : x2 + 1] = True
        return mask


# --------------------------------------------------------------------------- zero-shot detection

_DETECTOR_EXAMPLE = "IDEA-Research/grounding-dino-tiny"


class ZeroShotDetector:
    """Any transformers zero-shot object detector, keeping the best box per caption.

    Grounding-DINO-style models (whose processor post-processing takes a ``text_threshold``)
    get one call per caption, ``"<caption>."``, as in the reference script, and keep the
    highest-scoring box the post-processing returns. OWL-ViT / OWLv2 get all captions as queries
    of a single call, and each caption keeps its own best box (sigmoid of its logit). A caption
    whose best box does not score above ``box_threshold`` is a miss (``None``).

    Args:
        pretrained: local directory (``config.json``, weights, processor files) or hub id, e.g.
            ``IDEA-Research/grounding-dino-tiny`` or ``google/owlvit-base-patch32``.
        model: an already built model (then ``processor`` is required and ``pretrained`` ignored).
        processor: its processor.
        box_threshold: minimum box score (the protocol's 0.35 for Grounding DINO; OWL models
            score lower, about 0.1).
        text_threshold: minimum text-token score (Grounding DINO only; protocol 0.25).
        device: ``None`` → CUDA if available, else CPU.

    Raises:
        FileNotFoundError: a path that does not exist.
        OSError: a hub id that cannot be loaded (offline, no local cache).
    """

    name = "zero_shot"
    oracle = False

    def __init__(
        self,
        pretrained: str | Path | None = None,
        *,
        model: Any = None,
        processor: Any = None,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        device: str | None = None,
    ) -> None:
        from rewardkit.rewards.encoders import resolve_device, resolve_weights

        if not 0 <= box_threshold <= 1 or not 0 <= text_threshold <= 1:
            raise ValueError(f"thresholds must lie in [0, 1], got box {box_threshold}, text {text_threshold}")
        if model is None:
            if pretrained is None:
                raise ValueError(
                    f"pass pretrained= a local directory or hub id (e.g. {_DETECTOR_EXAMPLE!r}), "
                    "or model= and processor="
                )
            from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

            source, is_local = resolve_weights(
                pretrained, what="zero-shot detector", example=_DETECTOR_EXAMPLE
            )
            try:
                model = AutoModelForZeroShotObjectDetection.from_pretrained(source)
                processor = AutoProcessor.from_pretrained(source)  # type: ignore[no-untyped-call]
            except OSError as err:
                where = "the local directory" if is_local else "the hub id"
                raise OSError(
                    f"could not load a zero-shot detector from {where} {source!r}: {err}. Pass a "
                    "directory written by save_pretrained (model and processor), e.g. made with "
                    f"`hf download {_DETECTOR_EXAMPLE} --local-dir DIR`"
                ) from err
        elif processor is None:
            raise ValueError("model= needs processor= as well")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.box_threshold = float(box_threshold)
        self.text_threshold = float(text_threshold)
        post = processor.post_process_grounded_object_detection
        self.grounded = "text_threshold" in inspect.signature(post).parameters
        self.padded_square = getattr(model.config, "model_type", "") == "owlv2"

    def _target_size(self, h: int, w: int) -> tuple[int, int]:
        # OWLv2 pads images to a square at the bottom/right; its boxes are relative to that square.
        side = max(h, w)
        return (side, side) if self.padded_square else (h, w)

    def _run(self, image: Image, queries: list[str]) -> Any:
        # Grounding DINO takes one caption string per image, OWL models a list of queries per image.
        text: Any = queries[0] if self.grounded else queries
        inputs = self.processor(text=[text], images=[image], return_tensors="pt", padding=True)
        inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        with torch.inference_mode():
            outputs = self.model(**inputs)
        return inputs, outputs

    def _clamp(self, box: Sequence[float], h: int, w: int) -> Box:
        x1, y1, x2, y2 = (float(v) for v in box)
        return (
            min(max(x1, 0.0), w - 1.0),
            min(max(y1, 0.0), h - 1.0),
            min(max(x2, 0.0), w - 1.0),
            min(max(y2, 0.0), h - 1.0),
        )

    def detect(self, image: Image, captions: Sequence[str], *, instance: BenchInstance) -> list[Box | None]:
        """The best box per caption (``None`` below threshold)."""
        h, w = image.shape[:2]
        target = [self._target_size(h, w)]
        found: list[Box | None] = [None] * len(captions)
        if not captions:
            return found
        if self.grounded:
            for i, caption in enumerate(captions):
                text = caption.strip().lower()
                text = text if text.endswith(".") else text + "."
                inputs, outputs = self._run(image, [text])
                (result,) = self.processor.post_process_grounded_object_detection(
                    outputs,
                    input_ids=inputs["input_ids"],
                    threshold=self.box_threshold,
                    text_threshold=self.text_threshold,
                    target_sizes=target,
                )
                if len(result["scores"]):
                    best = int(result["scores"].argmax())
                    found[i] = self._clamp(result["boxes"][best].tolist(), h, w)
            return found
        # OWL-style: score every (box, query) pair and keep each query's best box. (The
        # processor's post-processing gives each box only to its top query, which would let one
        # caption hide another's box; the protocol detects each caption independently.)
        _, outputs = self._run(image, list(captions))
        logits, boxes = getattr(outputs, "logits", None), getattr(outputs, "pred_boxes", None)
        if logits is None or boxes is None or logits.ndim != 3 or logits.shape[-1] != len(captions):
            raise ValueError(
                f"{type(self.model).__name__} is not an OWL-style detector (per-query logits and "
                "pred_boxes); supported: Grounding DINO, MM-Grounding-DINO, OWL-ViT, OWLv2"
            )
        logits = logits[0].float()  # (boxes, queries)
        th, tw = target[0]
        for q in range(len(captions)):
            best = int(logits[:, q].argmax())  # on logits: the sigmoid saturates into ties
            if float(logits[best, q].sigmoid()) <= self.box_threshold:  # "> threshold", as Grounding DINO
                continue
            cx, cy, bw, bh = boxes[0, best].float().tolist()  # centre/size, relative to the input
            pixels = ((cx - bw / 2) * tw, (cy - bh / 2) * th, (cx + bw / 2) * tw, (cy + bh / 2) * th)
            found[q] = self._clamp(pixels, h, w)
        return found


# --------------------------------------------------------------------------- registries


def _ground_truth_boxes(*, benchmark: Benchmark, path: str | None = None) -> GroundTruthBoxes:
    return GroundTruthBoxes.from_benchmark(benchmark, path)


def _zero_shot(*, benchmark: Benchmark, model: str | None = None, **options: Any) -> ZeroShotDetector:
    return ZeroShotDetector(model, **options)


def _box_masks(*, benchmark: Benchmark, pad: int = 0) -> BoxMasks:
    return BoxMasks(pad=pad)


def _ground_truth_keypoints(*, benchmark: Benchmark, path: str | None = None) -> GroundTruthKeypoints:
    return GroundTruthKeypoints.from_benchmark(benchmark, path)


#: Subject detectors by name: ``factory(benchmark=..., **options)``. ``zero_shot`` takes ``model=``
#: (path or hub id), ``box_threshold``, ``text_threshold``, ``device``.
DETECTORS: dict[str, Callable[..., SubjectDetector]] = {
    "ground_truth": _ground_truth_boxes,
    "zero_shot": _zero_shot,
}
#: Foreground-mask providers by name.
MASKS: dict[str, Callable[..., MaskProvider]] = {"box": _box_masks}
#: Keypoint providers by name.
KEYPOINTS: dict[str, Callable[..., KeypointProvider]] = {"ground_truth": _ground_truth_keypoints}

_KINDS: Final[dict[str, tuple[dict[str, Callable[..., Any]], str]]] = {
    "detector": (DETECTORS, "detect"),
    "masks": (MASKS, "foreground"),
    "keypoints": (KEYPOINTS, "keypoints"),
}


def load_provider(kind: str, spec: Any, *, benchmark: Benchmark, **options: Any) -> Any:
    """Build a provider from a registry name, a ``"module:attribute"`` string, or pass one through.

    Args:
        kind: ``"detector"``, ``"masks"`` or ``"keypoints"``.
        spec: a registered name (``DETECTORS`` / ``MASKS`` / ``KEYPOINTS``); ``"pkg.mod:attr"``
            naming a factory (called as ``factory(benchmark=..., **options)``) or a ready
            provider; or a provider object.
        benchmark: the benchmark (ground-truth providers read its root).
        **options: factory options.

    Returns:
        The provider.

    Raises:
        ValueError: unknown kind or name (the message lists the registered names), or an
            object without the protocol's method.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}")
    table, method = _KINDS[kind]
    obj: Any = spec
    if isinstance(spec, str):
        if ":" in spec:
            module, _, attr = spec.partition(":")
            try:
                obj = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as err:
                raise ValueError(f"cannot import {kind} provider {spec!r}: {err}") from err
        elif spec in table:
            obj = table[spec]
        else:
            raise ValueError(
                f"unknown {kind} provider {spec!r}; registered: {sorted(table)}, or pass 'module:attribute'"
            )
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, method)):
        params = inspect.signature(obj).parameters
        takes_benchmark = "benchmark" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )
        obj = obj(benchmark=benchmark, **options) if takes_benchmark else obj(**options)
    elif options:
        raise ValueError(f"{kind} options {sorted(options)} were given with an already built provider")
    if not callable(getattr(obj, method, None)):
        raise ValueError(f"{kind} provider {type(obj).__name__} has no {method}() method")
    return obj
