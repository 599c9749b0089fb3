"""OmniRef-Bench metadata: typed instances and references, loaded and written in the original format.

The metadata file is a JSON list of objects with ``index``, ``category``, ``prompt``,
``edit_image`` (reference paths, in prompt order: "image N" is ``edit_image[N-1]``) and an
optional ``image`` (the ground-truth target). The reference type is encoded only in the path
(``…/transfer_subjects/<subject name>.png``, ``…/style/reference.png``,
``…/background/background.png``, ``…/lighting/lighting_reference.png``,
``…/pose/skeleton/<name>.jpg`` or ``…/pose/reference/<name>.png``); this module turns that into
typed [`Reference`][rewardkit.evaluation.benchmark.Reference] records once, so nothing
downstream sniffs paths. Instances are identified by their ``index`` field, never by list
position (the two differ in the released metadata).
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal, TypeAlias

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CATEGORY_TOKENS",
    "METRICS",
    "BenchInstance",
    "Benchmark",
    "Reference",
    "ReferenceKind",
    "load_benchmark",
    "load_keypoints",
    "write_benchmark",
]

ReferenceKind: TypeAlias = Literal[
    "subject", "background", "style", "lighting", "pose_skeleton", "pose_image"
]
Metric: TypeAlias = Literal["subject", "background", "style", "lighting", "pose"]

#: The objective metrics, in the paper's column order.
METRICS: Final[tuple[Metric, ...]] = ("subject", "style", "background", "lighting", "pose")
#: Tokens a category is made of (``"subject_pose_bg"`` → subject, pose, background).
CATEGORY_TOKENS: Final[dict[str, str]] = {
    "subject": "subject",
    "bg": "background",
    "style": "style",
    "lighting": "lighting",
    "pose": "pose",
}


@dataclass(frozen=True)
class Reference:
    """One reference image of an instance.

    Attributes:
        path: path relative to the benchmark root, as written in the metadata.
        kind: what the reference provides (pose references are either a rendered skeleton or
            an image of a person in the pose).
        slot: 1-based position in the instance's reference list, the N of "image N".
        subject_name: for subjects, the file stem (e.g. "a wild rabbit"), the detector caption.
        keypoints_path: for pose references, where the ground-truth COCO-17 keypoints live.
    """

    path: str
    kind: ReferenceKind
    slot: int
    subject_name: str | None = None
    keypoints_path: str | None = None

    @property
    def type(self) -> Metric:
        """The reference type of the paper (pose skeletons and pose images are both "pose")."""
        return "pose" if self.kind.startswith("pose") else self.kind  # type: ignore[return-value]


@dataclass(frozen=True)
class BenchInstance:
    """One benchmark instance: a prompt, its ordered references and optionally a target.

    Attributes:
        index: the instance id (the metadata's ``index`` field; outputs are named by it).
        category: type combination, e.g. ``"subject_bg_style"``.
        prompt: the instruction, which refers to references as "image N".
        references: the references in prompt order.
        target: path of the ground-truth image, if any.
        position: list position in the metadata file (for error messages only).
    """

    index: int
    category: str
    prompt: str
    references: tuple[Reference, ...]
    target: str | None = None
    position: int = field(default=-1, compare=False)

    @property
    def n_refs(self) -> int:
        """Number of reference images."""
        return len(self.references)

    @property
    def types(self) -> frozenset[str]:
        """Reference types named by the category."""
        return frozenset(CATEGORY_TOKENS[t] for t in self.category.split("_"))

    def references_of(self, kind: str) -> tuple[Reference, ...]:
        """References of one type (``"pose"`` matches both pose kinds), in prompt order."""
        return tuple(r for r in self.references if r.type == kind or r.kind == kind)

    def applies(self, metric: str) -> bool:
        """Whether an objective metric scores this instance (the protocol's applicability rules)."""
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        types = self.types
        if metric in ("style", "lighting"):
            return metric in types and "subject" in types
        return metric in types

    def to_json(self) -> dict[str, Any]:
        """The instance as a metadata entry of the original format."""
        entry: dict[str, Any] = {
            "index": self.index,
            "category": self.category,
            "prompt": self.prompt,
            "edit_image": [r.path for r in self.references],
        }
        if self.target is not None:
            entry["image"] = self.target
        return entry


@dataclass(frozen=True)
class Benchmark:
    """A loaded benchmark: its instances and the folder their paths are relative to."""

    instances: tuple[BenchInstance, ...]
    root: Path | None = None

    def __len__(self) -> int:
        return len(self.instances)

    def __iter__(self) -> Any:
        return iter(self.instances)

    def by_index(self, index: int) -> BenchInstance:
        """The instance with this ``index`` field."""
        for inst in self.instances:
            if inst.index == index:
                return inst
        raise KeyError(f"no instance with index {index} in this benchmark")

    def resolve(self, relative: str) -> Path:
        """Absolute path of a metadata path (needs ``root``)."""
        if self.root is None:
            raise ValueError("this benchmark has no root folder; pass root= to load_benchmark")
        return self.root / relative


def _classify(path: str, where: str) -> tuple[ReferenceKind, str | None, str | None]:
    """Reference kind, subject name and keypoints path from a metadata path."""
    p = PurePosixPath(path)
    parts = p.parts
    if "transfer_subjects" in parts:
        return "subject", p.stem, None
    if "pose" in parts:
        case = PurePosixPath(*parts[: parts.index("pose")])
        if "skeleton" in parts:
            return "pose_skeleton", None, str(case / "pose" / "keypoints" / f"{p.stem}.json")
        if "reference" in parts:
            stem = p.stem.removesuffix("_skeleton")
            return "pose_image", None, str(case / "pose" / "reference" / f"{stem}.json")
    if "style" in parts:
        return "style", None, None
    if "background" in parts:
        return "background", None, None
    if "lighting" in parts:
        return "lighting", None, None
    raise ValueError(
        f"{where}: cannot tell the type of reference {path!r}; expected a path under "
        "transfer_subjects/, style/, background/, lighting/, pose/skeleton/ or pose/reference/"
    )


def _require(entry: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in entry:
        raise ValueError(f"{where}: missing field {key!r}")
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ValueError(f"{where}: field {key!r} must be {expected}, got {type(value).__name__}")
    return value


def parse_instance(entry: Any, position: int) -> BenchInstance:
    """Validate one metadata entry (at list ``position``) and turn it into a `BenchInstance`."""
    where = f"metadata entry {position}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object, got {type(entry).__name__}")
    index = _require(entry, "index", int, where)
    where = f"metadata entry {position} (index {index})"
    category = _require(entry, "category", str, where)
    unknown = [t for t in category.split("_") if t not in CATEGORY_TOKENS]
    if unknown:
        raise ValueError(
            f"{where}: category {category!r} has unknown part(s) {unknown}; parts are {list(CATEGORY_TOKENS)}"
        )
    prompt = _require(entry, "prompt", str, where)
    paths = _require(entry, "edit_image", (list, str), where)
    paths = [paths] if isinstance(paths, str) else paths
    if not paths or not all(isinstance(p, str) and p for p in paths):
        raise ValueError(f"{where}: 'edit_image' must be a non-empty list of paths")
    references = []
    for slot, path in enumerate(paths, start=1):
        kind, subject, keypoints = _classify(path, where)
        references.append(Reference(path, kind, slot, subject, keypoints))
    target = entry.get("image")
    if target is not None and not isinstance(target, str):
        raise ValueError(f"{where}: field 'image' must be a path string, got {type(target).__name__}")
    return BenchInstance(index, category, prompt, tuple(references), target, position)


def load_benchmark(
    metadata: str | Path, root: str | Path | None = None, *, check_files: bool = False
) -> Benchmark:
    """Load an OmniRef-Bench metadata file.

    Args:
        metadata: the JSON metadata file (a list of entries).
        root: folder the reference paths are relative to; defaults to the metadata's folder.
        check_files: also check that every reference, target and pose-keypoint file exists.

    Returns:
        The [`Benchmark`][rewardkit.evaluation.benchmark.Benchmark].

    Raises:
        FileNotFoundError: the metadata file (or, with ``check_files``, a listed file) is missing.
        ValueError: malformed JSON or entries, naming the entry's position and index, or
            duplicate ``index`` values.
    """
    path = Path(metadata)
    if not path.is_file():
        raise FileNotFoundError(f"metadata file not found: {path}")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(entries, list):
        raise ValueError(f"{path} must hold a JSON list of entries, got {type(entries).__name__}")
    instances = tuple(parse_instance(e, i) for i, e in enumerate(entries))
    seen: dict[int, int] = {}
    for inst in instances:
        if inst.index in seen:
            raise ValueError(
                f"index {inst.index} appears twice (entries {seen[inst.index]} and {inst.position})"
            )
        seen[inst.index] = inst.position
    bench = Benchmark(instances, Path(root) if root is not None else path.parent)
    if check_files:
        _check_files(bench)
    return bench


def _check_files(bench: Benchmark) -> None:
    missing = []
    for inst in bench:
        listed = [r.path for r in inst.references] + [
            r.keypoints_path for r in inst.references if r.keypoints_path
        ]
        listed += [inst.target] if inst.target else []
        missing += [(inst.index, p) for p in listed if p and not bench.resolve(p).is_file()]
    if missing:
        shown = ", ".join(f"{p} (index {i})" for i, p in missing[:5])
        raise FileNotFoundError(
            f"{len(missing)} file(s) listed in the metadata are missing under {bench.root}: {shown}"
        )


def write_benchmark(instances: Iterable[BenchInstance], metadata: str | Path) -> Path:
    """Write instances as a metadata file of the original format (atomically)."""
    path = Path(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps([inst.to_json() for inst in instances], indent=1), encoding="utf-8")
    tmp.replace(path)
    return path


def load_keypoints(path: str | Path, *, person: int = 0) -> NDArray[np.float64]:
    """Read COCO-17 keypoints from an AlphaPose-style JSON file.

    The file holds ``{"persons": [{"keypoints": [x, y, conf] * 17, ...}, ...], ...}``; the
    protocol uses ``persons[0]``.

    Returns:
        `(17, 3)` array of ``(x, y, conf)``.

    Raises:
        FileNotFoundError: missing file.
        ValueError: no such person or a keypoint list that is not 51 numbers.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"keypoints file not found: {p}")
    data = json.loads(p.read_text(encoding="utf-8"))
    persons: Sequence[Any] = data.get("persons", []) if isinstance(data, dict) else []
    if len(persons) <= person:
        raise ValueError(f"{p}: has {len(persons)} person(s), asked for person {person}")
    flat = np.asarray(persons[person].get("keypoints", []), dtype=np.float64)
    if flat.size != 51:
        raise ValueError(f"{p}: person {person} must have 17 × (x, y, conf) = 51 numbers, got {flat.size}")
    return flat.reshape(17, 3)
