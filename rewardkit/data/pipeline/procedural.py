"""Offline providers: OmniRef-mini's procedural scenes played through the pipeline's stages.

They stand where the LLM, the text-to-image and edit models, the grounding model and the pose
model stand in a real build, so the whole pipeline runs on a CPU with no weights: the text
stage writes the names of an OmniRef-mini scene drawn from the record's seed, the image stage
renders it, the grounder, segmenter and pose estimator read its ground truth (oracles, like
the evaluation's ``ground_truth`` providers). ``ColourSegmenter`` is a real, model-free
segmenter (pixels unlike the box border), weak on textured backgrounds. Subject references
are then cut from the target by the pipeline itself.
"""

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from rewardkit.data.omniref_mini import SyntheticInstance, make_instance
from rewardkit.data.pipeline.record import SceneSpec, Subject
from rewardkit.data.pipeline.steps import Box, Image, RecordPlan

__all__ = [
    "ColourSegmenter",
    "ProceduralGrounder",
    "ProceduralImages",
    "ProceduralPose",
    "ProceduralSegmenter",
    "ProceduralText",
]

_KINDS = {"background": "background", "lighting": "lighting", "style": "style", "pose": "pose"}


@lru_cache(maxsize=8)
def _scene(category: str, n_refs: int, seed: int, size: int) -> SyntheticInstance:
    return make_instance(category, n_refs, np.random.default_rng(seed), size=size)


def _instance(plan: RecordPlan) -> SyntheticInstance:
    return _scene(plan.category, plan.n_refs, plan.seed, plan.size)


def _uint8(image: NDArray[np.floating]) -> Image:
    out: Image = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    return out


class ProceduralText:
    """Names the subjects and the other types of the record's OmniRef-mini scene."""

    def scene(self, plan: RecordPlan) -> SceneSpec:
        """The scene spec (``scene_prompt`` lists the subjects and descriptions)."""
        inst = _instance(plan)
        subjects = tuple(Subject(name, name) for kind, name, _ in inst.references if kind == "subject")
        described = {kind: name for kind, name, _ in inst.references if kind != "subject"}
        parts = [", ".join(s.name for s in subjects)] + [f"{k}: {v}" for k, v in described.items()]
        return SceneSpec(
            subjects=subjects,
            scene_prompt="; ".join(parts),
            background=described.get("background"),
            style=described.get("style"),
            lighting="the lighting of the reference" if "lighting" in described else None,
            pose="a standing person" if "pose" in described else None,
        )


class ProceduralImages:
    """Renders the target and the background, style and lighting references of the scene."""

    def target(self, plan: RecordPlan, spec: SceneSpec) -> Image:
        """The rendered target."""
        return _uint8(_instance(plan).target)

    def reference(self, plan: RecordPlan, spec: SceneSpec, kind: str, target: Image) -> Image:
        """The scene's reference of ``kind``."""
        for ref_kind, _, image in _instance(plan).references:
            if ref_kind == _KINDS.get(kind):
                return _uint8(image)
        raise ValueError(f"the scene of record {plan.index} has no {kind!r} reference")


class ProceduralGrounder:
    """Reads the subject boxes from the scene's ground truth (an oracle)."""

    def boxes(self, image: Image, names: Sequence[str], *, plan: RecordPlan) -> list[Box | None]:
        """The ground-truth boxes, in prompt order."""
        inst = _instance(plan)
        truth = [name for kind, name, _ in inst.references if kind == "subject"]
        table = dict(zip(truth, inst.subject_boxes, strict=True))
        return [None if n not in table else tuple(float(v) for v in table[n]) for n in names]  # type: ignore[misc]


class ProceduralPose:
    """Reads the person's keypoints from the scene's ground truth (an oracle)."""

    def keypoints(self, image: Image, *, plan: RecordPlan) -> NDArray[np.float64] | None:
        """The ground-truth COCO-17 keypoints, or None without a person."""
        kp = _instance(plan).pose_keypoints
        return None if kp is None else np.asarray(kp, np.float64)


class ProceduralSegmenter:
    """Reads each subject's painted mask from the scene's ground truth (an oracle).

    Boxes are matched to the scene's subjects by position (the procedural grounder's boxes are
    the ground truth's); a box that matches no subject gets an empty mask.
    """

    def masks(self, image: Image, boxes: Sequence[Box], *, plan: RecordPlan) -> list[NDArray[np.bool_]]:
        """One mask per box."""
        inst = _instance(plan)
        table = {
            tuple(float(v) for v in box): mask
            for box, mask in zip(inst.subject_boxes, inst.subject_masks, strict=True)
        }
        empty = np.zeros(image.shape[:2], bool)
        return [table.get(tuple(float(v) for v in box), empty).copy() for box in boxes]


class ColourSegmenter:
    """A model-free segmenter: inside each box, the pixels unlike the box's border colour.

    Args:
        threshold: largest per-channel difference (0–255) from the border's median colour
            that still counts as background.
    """

    def __init__(self, threshold: float = 24.0) -> None:
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.threshold = float(threshold)

    def masks(self, image: Image, boxes: Sequence[Box], *, plan: RecordPlan) -> list[NDArray[np.bool_]]:
        """One mask per box (empty where the box is empty)."""
        h, w = image.shape[:2]
        out = []
        for box in boxes:
            mask = np.zeros((h, w), bool)
            x1, y1 = max(0, int(box[0]) - 1), max(0, int(box[1]) - 1)
            x2, y2 = min(w, int(np.ceil(box[2])) + 1), min(h, int(np.ceil(box[3])) + 1)
            if x2 > x1 and y2 > y1:
                crop = image[y1:y2, x1:x2].astype(np.int16)
                border = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
                background = np.median(border, axis=0)
                mask[y1:y2, x1:x2] = np.abs(crop - background).max(axis=-1) > self.threshold
            out.append(mask)
        return out
