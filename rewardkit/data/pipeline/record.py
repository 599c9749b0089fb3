"""One training example as it moves through the construction pipeline, and its JSONL form."""

from dataclasses import asdict, dataclass, field
from typing import Any, Final

__all__ = ["REFERENCE_TYPES", "DataRecord", "ReferenceImage", "SceneSpec", "Subject"]

#: The reference types of DyRef / OmniRef-Bench, in the order a prompt names them.
REFERENCE_TYPES: Final[tuple[str, ...]] = ("subject", "background", "lighting", "pose", "style")


@dataclass(frozen=True)
class Subject:
    """One subject instance the text stage wrote.

    Attributes:
        name: the short caption a detector is given and the prompt uses (``"a red spotted disc"``).
        description: a longer description for the text-to-image prompt (may equal ``name``).
    """

    name: str
    description: str = ""


@dataclass(frozen=True)
class SceneSpec:
    """What the text stage writes for one record (paper App. B.2, step 1).

    Attributes:
        subjects: the subject instances, in prompt order.
        scene_prompt: the text-to-image prompt of the whole target scene.
        background: the background description (for background references), or None.
        style: the style description, or None.
        lighting: the lighting description, or None.
        pose: the pose description, or None.
    """

    subjects: tuple[Subject, ...]
    scene_prompt: str
    background: str | None = None
    style: str | None = None
    lighting: str | None = None
    pose: str | None = None


@dataclass(frozen=True)
class ReferenceImage:
    """One typed reference written to disk.

    Attributes:
        kind: ``"subject"``, ``"background"``, ``"lighting"``, ``"style"`` or ``"pose_skeleton"``.
        name: the subject's name or the type's description.
        path: image path relative to the split folder.
        keypoints_path: pose references: the COCO-17 keypoint file, relative to the split folder.
    """

    kind: str
    name: str
    path: str
    keypoints_path: str | None = None


@dataclass
class DataRecord:
    """One record: written to the shard's JSONL once every image of it is on disk.

    Attributes:
        index: position in the plan (a pure function of the config's seed and this index).
        split: ``"train"`` or ``"test"``.
        category: the type combination, e.g. ``"subject_bg_style"``.
        n_refs: number of references.
        spec: the text stage's output.
        target: the target image path (relative to the split folder).
        boxes: subject boxes ``(x1, y1, x2, y2)`` in target pixels, in prompt order (None: not found).
        references: the references in prompt order.
        prompt: the instruction with "image N" pointers.
        pose_keypoints: the target's COCO-17 keypoints ``(17 × 3)``, if the category has a pose.
        scores: every filter's score.
        dropped_by: the first filter that rejected the record (None: kept).
        reason: why it was dropped.
    """

    index: int
    split: str
    category: str
    n_refs: int
    spec: SceneSpec
    target: str = ""
    boxes: list[tuple[float, float, float, float] | None] = field(default_factory=list)
    references: list[ReferenceImage] = field(default_factory=list)
    prompt: str = ""
    pose_keypoints: list[list[float]] | None = None
    scores: dict[str, float] = field(default_factory=dict)
    dropped_by: str | None = None
    reason: str = ""

    @property
    def kept(self) -> bool:
        """Whether every filter accepted the record."""
        return self.dropped_by is None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``from_json`` reads it back)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DataRecord":
        """Read a dict written by ``to_json``."""
        spec = dict(data["spec"])
        spec["subjects"] = tuple(Subject(**s) for s in spec["subjects"])
        return cls(
            index=int(data["index"]),
            split=str(data["split"]),
            category=str(data["category"]),
            n_refs=int(data["n_refs"]),
            spec=SceneSpec(**spec),
            target=str(data["target"]),
            boxes=[None if b is None else (b[0], b[1], b[2], b[3]) for b in data["boxes"]],
            references=[ReferenceImage(**r) for r in data["references"]],
            prompt=str(data["prompt"]),
            pose_keypoints=data.get("pose_keypoints"),
            scores={str(k): float(v) for k, v in data.get("scores", {}).items()},
            dropped_by=data.get("dropped_by"),
            reason=str(data.get("reason", "")),
        )
