r"""The construction stages as protocols, and the model-free steps as pure functions.

DyRef's data (seed paper, App. B.2) is made in stages; each model-backed stage is a protocol
here, implemented by providers (an offline procedural set in
[`procedural`][rewardkit.data.pipeline.procedural]; model-backed ones plug in by name or
``module:attr``):

1. **text** — [`TextProvider`][rewardkit.data.pipeline.steps.TextProvider]: subject instances
   and a scene prompt for a type combination;
2. **target** — [`ImageProvider.target`][rewardkit.data.pipeline.steps.ImageProvider]: the
   target image from the scene prompt;
3. **grounding + segmentation** — [`Grounder`][rewardkit.data.pipeline.steps.Grounder] and
   [`Segmenter`][rewardkit.data.pipeline.steps.Segmenter]: each subject's box and mask;
4. **references** — a subject reference is the masked crop of the target on white
   ([`subject_reference`][rewardkit.data.pipeline.steps.subject_reference], no model); the
   background, style and lighting references come from the image provider (an edit model);
   a pose reference is the skeleton of the target's keypoints
   ([`PoseEstimator`][rewardkit.data.pipeline.steps.PoseEstimator], then
   [`skeleton_image`][rewardkit.data.pipeline.steps.skeleton_image]);
5. **prompt** — [`compose_prompt`][rewardkit.data.pipeline.steps.compose_prompt] points at every
   reference as "image N";
6. **filters** — [`RecordFilter`][rewardkit.data.pipeline.steps.RecordFilter]s score the record
   and may drop it, with a reason.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from rewardkit.data.pipeline.record import DataRecord, SceneSpec

__all__ = [
    "Box",
    "FilterResult",
    "Grounder",
    "ImageProvider",
    "PoseEstimator",
    "RecordFilter",
    "RecordImages",
    "RecordPlan",
    "Segmenter",
    "TextProvider",
    "check_model_path",
    "compose_prompt",
    "skeleton_image",
    "subject_reference",
]

Image = NDArray[np.uint8]  # (H, W, 3) RGB
Box = tuple[float, float, float, float]  # (x1, y1, x2, y2) in pixels


@dataclass(frozen=True)
class RecordPlan:
    """What a record will be, fixed before any provider runs.

    Attributes:
        index: position in the plan.
        category: type combination (``"subject_pose_bg"``).
        n_refs: number of references.
        seed: the record's seed (providers draw from it, so a re-run makes the same record).
        split: ``"train"`` or ``"test"``.
        size: image side in pixels.
    """

    index: int
    category: str
    n_refs: int
    seed: int
    split: str
    size: int

    @property
    def types(self) -> tuple[str, ...]:
        """The category's reference types besides subjects, in prompt order."""
        names = {"bg": "background", "lighting": "lighting", "pose": "pose", "style": "style"}
        tokens = self.category.split("_")[1:]
        return tuple(
            t for t in ("background", "lighting", "pose", "style") if t in {names[x] for x in tokens}
        )

    @property
    def n_subjects(self) -> int:
        """How many subject references the record has."""
        return self.n_refs - len(self.types)


@runtime_checkable
class TextProvider(Protocol):
    """Stage 1: writes the subjects and scene prompt of a record (an LLM, or procedural)."""

    def scene(self, plan: RecordPlan) -> SceneSpec:
        """The scene for ``plan`` (``plan.n_subjects`` subjects; descriptions for its types)."""
        ...


@runtime_checkable
class ImageProvider(Protocol):
    """Stages 2 and 4: the target (text-to-image) and the edited references (an edit model)."""

    def target(self, plan: RecordPlan, spec: SceneSpec) -> Image:
        """The target image of the scene, ``plan.size`` square."""
        ...

    def reference(self, plan: RecordPlan, spec: SceneSpec, kind: str, target: Image) -> Image:
        """A ``"background"``, ``"style"`` or ``"lighting"`` reference for the target.

        Background: the target with its subjects removed; style: another scene in the target's
        style; lighting: a neutral scene under the target's light.
        """
        ...


@runtime_checkable
class Grounder(Protocol):
    """Stage 3a: one box per subject name in the target (None where not found)."""

    def boxes(self, image: Image, names: Sequence[str], *, plan: RecordPlan) -> list[Box | None]:
        """Boxes of ``names`` in ``image``, in order (``plan``: the record, for context)."""
        ...


@runtime_checkable
class Segmenter(Protocol):
    """Stage 3b: a boolean mask per box."""

    def masks(self, image: Image, boxes: Sequence[Box], *, plan: RecordPlan) -> list[NDArray[np.bool_]]:
        """``(H, W)`` masks, one per box, in order (``plan``: the record, for context)."""
        ...


@runtime_checkable
class PoseEstimator(Protocol):
    """Stage 4 (pose): COCO-17 keypoints ``(17, 3)`` (x, y, confidence) of the target's person."""

    def keypoints(self, image: Image, *, plan: RecordPlan) -> NDArray[np.float64] | None:
        """Keypoints in pixels, or None if no person is found (``plan``: the record, for context)."""
        ...


@dataclass(frozen=True)
class RecordImages:
    """The images of a record, in memory, for the filters.

    Attributes:
        target: the target image.
        references: the references in prompt order.
        masks: the subject masks in prompt order (None where a subject was not found).
    """

    target: Image
    references: tuple[Image, ...]
    masks: tuple[NDArray[np.bool_] | None, ...]


@dataclass(frozen=True)
class FilterResult:
    """A filter's verdict: its score, whether the record stays, and why not."""

    score: float
    keep: bool
    reason: str = ""


@runtime_checkable
class RecordFilter(Protocol):
    """Stage 6: scores a finished record; a record any filter rejects is dropped."""

    name: str

    def check(self, record: DataRecord, images: RecordImages) -> FilterResult:
        """The verdict on one record."""
        ...


def check_model_path(option: str, path: str) -> None:
    """Refuse a model path that is neither a folder, a hub id (``owner/name``) nor ``"tiny"``."""
    if path != "tiny" and "/" not in path and not Path(path).exists():
        raise FileNotFoundError(f"{option}: {path!r} is neither a model folder nor a hub id (or 'tiny')")


def subject_reference(
    target: Image, box: Box, mask: NDArray[np.bool_], size: int, *, margin: float = 0.1
) -> Image:
    """The subject cut out of the target: masked pixels on white, centred in a square canvas.

    The crop is the box widened by ``margin`` of its longer side; it is scaled (nearest
    neighbour, so no colour outside the target's appears) to fill ``(1 − 2·margin)`` of a
    ``size``-pixel white square.

    Args:
        target: `(H, W, 3)` uint8 image.
        box: ``(x1, y1, x2, y2)`` in target pixels.
        mask: `(H, W)` boolean mask of the subject.
        size: side of the output square.
        margin: white border as a fraction of the side.

    Returns:
        `(size, size, 3)` uint8.

    Raises:
        ValueError: an empty box or mask, or a mask of another shape.
    """
    h, w = target.shape[:2]
    if mask.shape != (h, w):
        raise ValueError(f"mask must be {(h, w)} like the target, got {mask.shape}")
    x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"box {box} is empty inside a {w}×{h} target")
    crop, keep = target[y1:y2, x1:x2], mask[y1:y2, x1:x2]
    if not keep.any():
        raise ValueError(f"the mask is empty inside box {box}")
    cut = np.where(keep[..., None], crop, np.uint8(255)).astype(np.uint8)
    inner = max(1, round(size * (1 - 2 * margin)))
    scale = inner / max(cut.shape[0], cut.shape[1])
    out_h, out_w = max(1, round(cut.shape[0] * scale)), max(1, round(cut.shape[1] * scale))
    rows = np.minimum((np.arange(out_h) / scale).astype(int), cut.shape[0] - 1)
    cols = np.minimum((np.arange(out_w) / scale).astype(int), cut.shape[1] - 1)
    canvas = np.full((size, size, 3), 255, np.uint8)
    top, left = (size - out_h) // 2, (size - out_w) // 2
    canvas[top : top + out_h, left : left + out_w] = cut[rows][:, cols]
    return canvas


#: COCO-17 limbs drawn in a skeleton reference (OpenPose-style colours, one per limb).
_LIMBS: tuple[tuple[int, int], ...] = (
    (5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16),
    (5, 6), (11, 12), (5, 11), (6, 12), (0, 5), (0, 6),
)  # fmt: skip


def skeleton_image(keypoints: NDArray[np.float64], size: int, *, width: float | None = None) -> Image:
    """A pose reference: the keypoints' limbs drawn in distinct colours on black.

    Args:
        keypoints: `(17, 3)` COCO-17 keypoints (x, y, confidence) in ``size``-pixel coordinates;
            limbs with a zero-confidence end are not drawn.
        size: side of the output square.
        width: limb half-width in pixels (default ``size / 48``, at least 1).

    Returns:
        `(size, size, 3)` uint8.
    """
    kp = np.asarray(keypoints, np.float64)
    if kp.shape != (17, 3):
        raise ValueError(f"keypoints must be (17, 3), got {kp.shape}")
    half = max(1.0, size / 48) if width is None else width
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    canvas = np.zeros((size, size, 3), np.uint8)
    for i, (a, b) in enumerate(_LIMBS):
        if kp[a, 2] <= 0 or kp[b, 2] <= 0:
            continue
        p, d = kp[a, :2], kp[b, :2] - kp[a, :2]
        t = np.clip(((xs - p[0]) * d[0] + (ys - p[1]) * d[1]) / max(float(d @ d), 1e-9), 0, 1)
        near = (xs - p[0] - t * d[0]) ** 2 + (ys - p[1] - t * d[1]) ** 2 <= half**2
        hue = i / len(_LIMBS)
        colour = 255 * (0.5 + 0.5 * np.cos(2 * np.pi * (hue + np.array([0.0, 1 / 3, 2 / 3]))))
        canvas[near] = colour.astype(np.uint8)
    return canvas


_PHRASES = {
    "background": "in front of the {} of image {}",
    "lighting": "lit like image {1}",
    "pose": "with a person posed like image {1}",
    "style": "all in the {} style of image {}",
}


def compose_prompt(subject_names: Sequence[str], types: Sequence[str], descriptions: dict[str, Any]) -> str:
    """The instruction with "image N" pointers, references numbered in prompt order.

    Subjects come first (``"the red disc from image 1"``), then each other type in ``types``
    order, as OmniRef-Bench orders its references.

    Example:
        >>> compose_prompt(["a red disc", "a blue star"], ["background"], {"background": "meadow"})
        'Compose the red disc from image 1, the blue star from image 2, in front of the meadow of image 3.'
    """
    if not subject_names:
        raise ValueError("a record needs at least one subject")
    phrases = []
    for i, name in enumerate(subject_names, start=1):
        bare = name.split(" ", 1)[1] if name.split(" ", 1)[0].lower() in ("a", "an", "the") else name
        phrases.append(f"the {bare} from image {i}")
    for j, kind in enumerate(types, start=len(subject_names) + 1):
        if kind not in _PHRASES:
            raise ValueError(f"unknown reference type {kind!r}; expected one of {sorted(_PHRASES)}")
        phrases.append(_PHRASES[kind].format(descriptions.get(kind) or kind, j))
    return "Compose " + ", ".join(phrases) + "."
