"""OmniRef-mini: a procedural multi-reference dataset with exact ground truth.

Every instance is a small scene composed from typed parts, each also rendered on its own as a
reference image, exactly like an OmniRef-Bench instance:

- **subjects** with an identity (shape × colour × pattern), named like "a red striped circle";
- a **background** (one of several procedural layouts and palettes);
- a **style**: an image-wide transform (posterise, sepia, pastel, pixelate, invert-tone); its
  reference is a different scene rendered in that style;
- a **lighting** field (direction and warm/cool tint); its reference is a grey sphere on a grey
  floor under that light;
- a **pose**: a stick figure with COCO-17 keypoints; its reference is the rendered skeleton.

The target image applies them in order: background, subjects, person, lighting, style. Instances
cover OmniRef-Bench's 10 type combinations with 2–7 references, prompts point at "image N",
and the whole set is written in the OmniRef-Bench metadata format (so the evaluation code reads
it unchanged), plus ``ground_truth.json`` with subject boxes and pose keypoints.

Pure numpy; PNG writing uses Pillow, imported only when files are written.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from rewardkit.evaluation.benchmark import BenchInstance, Reference, ReferenceKind, write_benchmark

__all__ = [
    "CATEGORIES",
    "SyntheticInstance",
    "make_instance",
    "write_omniref_mini",
]

Image = NDArray[Any]  # (H, W, 3) float32 in [0, 1]

#: OmniRef-Bench's 10 type combinations and the reference counts each one uses.
CATEGORIES: Final[dict[str, tuple[int, ...]]] = {
    "subject": (2, 3, 4, 5, 6, 7),
    "subject_bg": (2, 3, 4, 5, 6, 7),
    "subject_style": (2, 3, 4, 5, 6, 7),
    "subject_bg_style": (4, 5, 6, 7),
    "subject_lighting": (3, 4, 5, 6),
    "subject_pose": (2, 3, 4, 5, 6),
    "subject_pose_bg": (4, 5, 6),
    "subject_pose_bg_style": (5, 6, 7),
    "subject_pose_lighting": (4, 5, 6),
    "subject_pose_style": (4, 5, 6),
}

COLOURS: Final[dict[str, tuple[float, float, float]]] = {
    "red": (0.86, 0.15, 0.15),
    "green": (0.2, 0.7, 0.25),
    "blue": (0.15, 0.3, 0.9),
    "yellow": (0.95, 0.85, 0.15),
    "purple": (0.6, 0.2, 0.75),
    "orange": (0.95, 0.55, 0.1),
    "cyan": (0.1, 0.8, 0.85),
    "pink": (0.95, 0.45, 0.7),
}
SHAPES: Final[tuple[str, ...]] = ("circle", "square", "triangle", "diamond", "ring", "cross")
PATTERNS: Final[tuple[str, ...]] = ("plain", "striped", "dotted", "checkered")
BACKGROUNDS: Final[tuple[str, ...]] = ("meadow", "brick wall", "sunset", "tiled floor", "ocean")
STYLES: Final[tuple[str, ...]] = ("posterized", "sepia", "pastel", "pixelated", "inverted")

# COCO-17 skeleton drawn for the person (pairs of keypoint indices).
_LIMBS: Final[tuple[tuple[int, int], ...]] = (
    (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12),
    (11, 13), (13, 15), (12, 14), (14, 16), (0, 5), (0, 6),
)  # fmt: skip


@dataclass(frozen=True)
class SubjectSpec:
    """A subject's identity."""

    shape: str
    colour: str
    pattern: str

    @property
    def name(self) -> str:
        """Its caption, e.g. "a red striped circle"."""
        pattern = "" if self.pattern == "plain" else f"{self.pattern} "
        return f"a {self.colour} {pattern}{self.shape}"


@dataclass
class SyntheticInstance:
    """One generated instance: images in [0, 1] plus its metadata and ground truth.

    Attributes:
        category: the type combination.
        prompt: instruction referring to references as "image N".
        references: ``(kind, name, image)`` per reference, in prompt order.
        target: the composed ground-truth image.
        subject_boxes: ``(x1, y1, x2, y2)`` of each subject in the target, in prompt order.
        pose_keypoints: `(17, 3)` keypoints of the person in the target (pose categories).
        subject_masks: `(H, W)` boolean mask of each subject in the target, in prompt order
            (the pixels it was painted on; a pose skeleton may be drawn over them).
    """

    category: str
    prompt: str
    references: list[tuple[str, str, Image]]
    target: Image
    subject_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    pose_keypoints: NDArray[np.float64] | None = None
    subject_masks: list[NDArray[np.bool_]] = field(default_factory=list)


def _grid(size: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return xs, ys


def _shape_mask(shape: str, size: int, cx: float, cy: float, r: float) -> NDArray[np.bool_]:
    xs, ys = _grid(size)
    x, y = xs - cx, ys - cy
    masks: dict[str, Callable[[], NDArray[np.bool_]]] = {
        "circle": lambda: x**2 + y**2 <= r**2,
        "square": lambda: np.maximum(abs(x), abs(y)) <= 0.82 * r,
        "triangle": lambda: (y >= -r) & (y <= 0.8 * r) & (abs(x) <= (y + r) * 0.58),
        "diamond": lambda: abs(x) + abs(y) <= r,
        "ring": lambda: (x**2 + y**2 <= r**2) & (x**2 + y**2 >= (0.5 * r) ** 2),
        "cross": lambda: ((abs(x) <= r / 3) & (abs(y) <= r)) | ((abs(y) <= r / 3) & (abs(x) <= r)),
    }
    return masks[shape]()


def _pattern(pattern: str, size: int, colour: NDArray[np.float32], period: float) -> Image:
    xs, ys = _grid(size)
    base = np.broadcast_to(colour, (size, size, 3)).astype(np.float32)
    if pattern == "plain":
        return base.copy()
    if pattern == "striped":
        on = ((xs + ys) // period) % 2 == 0
    elif pattern == "dotted":
        on = ((xs % period - period / 2) ** 2 + (ys % period - period / 2) ** 2) > (period / 3.5) ** 2
    else:  # checkered
        on = ((xs // period) + (ys // period)) % 2 == 0
    dark = base * 0.45
    return np.where(on[..., None], base, dark).astype(np.float32)


def _paint_subject(
    canvas: Image, spec: SubjectSpec, cx: float, cy: float, r: float
) -> tuple[int, int, int, int]:
    size = canvas.shape[0]
    mask = _shape_mask(spec.shape, size, cx, cy, r)
    texture = _pattern(spec.pattern, size, np.array(COLOURS[spec.colour], np.float32), max(2.0, r / 2.5))
    canvas[mask] = texture[mask]
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return (int(cx), int(cy), int(cx), int(cy))
    return (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)


def _background(kind: str, size: int, rng: np.random.Generator) -> Image:
    xs, ys = _grid(size)
    u, v = xs / size, ys / size
    hue = rng.uniform(0.8, 1.2, 3).astype(np.float32)
    if kind == "meadow":
        sky = np.array([0.55, 0.75, 0.95]) * hue
        grass = np.array([0.3, 0.65, 0.25]) * hue
        img = np.where((v > 0.6)[..., None], grass, sky * (1 - 0.3 * v[..., None]))
    elif kind == "brick wall":
        row = (ys // (size / 8)) % 2
        mortar = ((ys % (size / 8)) < 1) | (((xs + row * size / 16) % (size / 4)) < 1)
        img = np.where(mortar[..., None], 0.85, np.array([0.7, 0.3, 0.2]) * hue)
    elif kind == "sunset":
        top, bottom = np.array([0.95, 0.5, 0.2]) * hue, np.array([0.35, 0.15, 0.45]) * hue
        img = top * (1 - v[..., None]) + bottom * v[..., None]
    elif kind == "tiled floor":
        on = ((xs // (size / 6)) + (ys // (size / 6))) % 2 == 0
        img = np.where(on[..., None], np.array([0.85, 0.85, 0.8]) * hue, np.array([0.35, 0.35, 0.4]) * hue)
    else:  # ocean
        waves = 0.05 * np.sin(u * 18 + 4 * v)[..., None]
        img = np.array([0.1, 0.35, 0.65]) * hue + waves
    return np.clip(np.asarray(img, np.float32), 0, 1)


def _apply_style(img: Image, style: str) -> Image:
    if style == "posterized":
        out = np.round(img * 2) / 2
    elif style == "sepia":
        grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
        out = grey[..., None] * np.array([1.07, 0.74, 0.43], np.float32)
    elif style == "pastel":
        out = 0.55 * img + 0.45
    elif style == "pixelated":
        size = img.shape[0]
        block = max(2, size // 16)
        small = img[block // 2 :: block, block // 2 :: block]
        out = np.repeat(np.repeat(small, block, 0), block, 1)[:size, :size]
    else:  # inverted
        out = 1.0 - img
    return np.clip(out, 0, 1).astype(np.float32)


def _lighting_field(size: int, angle: float, tint: NDArray[np.float32]) -> Image:
    xs, ys = _grid(size)
    x, y = xs / size - 0.5, ys / size - 0.5
    gain = np.clip(0.75 + 0.9 * (np.cos(angle) * x + np.sin(angle) * y), 0.25, 1.3)
    field: Image = (gain[..., None] * tint).astype(np.float32)
    return field


def _lighting_reference(size: int, light: Image) -> Image:
    """A white room (wall, floor) with a grey sphere, under the instance's light.

    Its tones match the targets' (subjects on white under the same light), so the lighting
    metric's luminance, contrast and histogram terms prefer the target's light to a darker
    or flatter picture. (A grey room made every ground-truth target score below a dim base.)
    """
    xs, ys = _grid(size)
    img = np.full((size, size, 3), 0.97, np.float32)
    img[ys > 0.7 * size] = 0.85
    sphere = (xs - size / 2) ** 2 + (ys - 0.5 * size) ** 2 <= (0.2 * size) ** 2
    img[sphere] = 0.5
    return np.clip(img * light, 0, 1).astype(np.float32)


def _pose_keypoints(rng: np.random.Generator, size: int, cx: float, scale: float) -> NDArray[np.float64]:
    """A random standing/gesturing pose: COCO-17 keypoints in pixels (conf 1)."""
    hip_y, neck_y = 0.62 * size, 0.62 * size - 0.32 * scale
    kp = np.zeros((17, 3))
    kp[0] = (cx, neck_y - 0.14 * scale, 1)  # nose
    kp[1], kp[2] = (
        (cx - 0.03 * scale, kp[0, 1] - 0.02 * scale, 1),
        (cx + 0.03 * scale, kp[0, 1] - 0.02 * scale, 1),
    )
    kp[3], kp[4] = (cx - 0.06 * scale, kp[0, 1], 1), (cx + 0.06 * scale, kp[0, 1], 1)
    kp[5], kp[6] = (cx - 0.12 * scale, neck_y, 1), (cx + 0.12 * scale, neck_y, 1)
    kp[11], kp[12] = (cx - 0.08 * scale, hip_y, 1), (cx + 0.08 * scale, hip_y, 1)
    for side, (shoulder, elbow, wrist) in enumerate(((5, 7, 9), (6, 8, 10))):
        sign = -1 if side == 0 else 1
        upper = rng.uniform(-0.4, 2.6)  # angle from straight down, outwards
        lower = upper + rng.uniform(-1.2, 1.2)
        for joint, parent, angle in ((elbow, shoulder, upper), (wrist, elbow, lower)):
            kp[joint] = (
                kp[parent, 0] + sign * 0.16 * scale * np.sin(angle),
                kp[parent, 1] + 0.16 * scale * np.cos(angle),
                1,
            )
    for side, (hip, knee, ankle) in enumerate(((11, 13, 15), (12, 14, 16))):
        sign = -1 if side == 0 else 1
        thigh = rng.uniform(-0.1, 0.9)
        shin = thigh - rng.uniform(0.0, 0.9)
        for joint, parent, angle in ((knee, hip, thigh), (ankle, knee, shin)):
            kp[joint] = (
                kp[parent, 0] + sign * 0.18 * scale * np.sin(angle),
                kp[parent, 1] + 0.18 * scale * np.cos(angle),
                1,
            )
    return kp


def _draw_skeleton(
    canvas: Image, kp: NDArray[np.float64], width: float, colours: Sequence[Sequence[float]]
) -> None:
    size = canvas.shape[0]
    xs, ys = _grid(size)
    for (a, b), colour in zip(_LIMBS, colours, strict=False):
        p, q = kp[a, :2], kp[b, :2]
        d = q - p
        t = np.clip(((xs - p[0]) * d[0] + (ys - p[1]) * d[1]) / max(float(d @ d), 1e-9), 0, 1)
        dist2 = (xs - p[0] - t * d[0]) ** 2 + (ys - p[1] - t * d[1]) ** 2
        canvas[dist2 <= width**2] = colour
    head = (xs - kp[0, 0]) ** 2 + (ys - kp[0, 1]) ** 2 <= (1.6 * width) ** 2
    canvas[head] = colours[0]


def _skeleton_colours(n: int) -> list[tuple[float, float, float]]:
    return [
        (0.5 + 0.5 * np.cos(i), 0.5 + 0.5 * np.sin(i * 1.3), 0.5 + 0.5 * np.cos(i * 0.7 + 1))
        for i in range(n)
    ]


def _slots(
    n: int, size: int, rng: np.random.Generator, *, leave_centre: bool
) -> list[tuple[float, float, float]]:
    """Non-overlapping (cx, cy, r) positions for n subjects: a jittered grid in reading order.

    Subject k takes the k-th free cell (row-major), so the layout follows from the prompt
    order and the number of subjects: a model can learn where "image k" goes, and metrics that
    crop the ground-truth boxes measure something a model can get right.
    """
    cols = int(np.ceil(np.sqrt(n)))
    while True:  # grow the grid until enough cells stay free (the person takes the middle column)
        rows = int(np.ceil(n / cols))
        cells = [(i, j) for i in range(rows) for j in range(cols) if not (leave_centre and j == cols // 2)]
        if len(cells) >= n:
            break
        cols += 1
    cells = cells[:n]
    cw, ch = size / cols, size / rows
    r = 0.36 * min(cw, ch)
    return [
        (cw * (j + 0.5) + rng.uniform(-0.08, 0.08) * cw, ch * (i + 0.5) + rng.uniform(-0.08, 0.08) * ch, r)
        for i, j in cells
    ]


def make_instance(
    category: str, n_refs: int, rng: np.random.Generator, *, size: int = 64
) -> SyntheticInstance:
    """Generate one instance of a category with ``n_refs`` references.

    Args:
        category: one of [`CATEGORIES`][rewardkit.data.omniref_mini.CATEGORIES].
        n_refs: number of references (subjects fill whatever the other types leave).
        rng: the random generator (the instance is a pure function of its state).
        size: side of every image in pixels.

    Returns:
        The [`SyntheticInstance`][rewardkit.data.omniref_mini.SyntheticInstance].
    """
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {list(CATEGORIES)}, got {category!r}")
    types = category.split("_")
    n_subjects = n_refs - (len(types) - 1)
    if n_subjects < 1:
        raise ValueError(f"{category!r} needs at least {len(types)} references, got n_refs={n_refs}")
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size}")

    combos = [(s, c, p) for s in SHAPES for c in COLOURS for p in PATTERNS]
    subjects = [SubjectSpec(*combos[k]) for k in rng.choice(len(combos), n_subjects, replace=False)]
    background_kind = str(rng.choice(BACKGROUNDS))
    style = str(rng.choice(STYLES))
    angle = float(rng.uniform(0, 2 * np.pi))
    tint = np.array([1.0, 0.92, 0.78] if rng.random() < 0.5 else [0.8, 0.9, 1.05], np.float32)
    light = _lighting_field(size, angle, tint)

    has_pose = "pose" in types
    background = _background(background_kind, size, rng)
    target = background.copy() if "bg" in types else np.ones((size, size, 3), np.float32)
    slots = _slots(n_subjects, size, rng, leave_centre=has_pose)
    boxes = [
        _paint_subject(target, spec, cx, cy, r) for spec, (cx, cy, r) in zip(subjects, slots, strict=True)
    ]
    masks = [
        _shape_mask(spec.shape, size, cx, cy, r) for spec, (cx, cy, r) in zip(subjects, slots, strict=True)
    ]
    keypoints = None
    if has_pose:
        keypoints = _pose_keypoints(rng, size, size / 2, 0.9 * size)
        _draw_skeleton(target, keypoints, max(1.0, size / 48), [(0.15, 0.15, 0.2)] * len(_LIMBS))
    if "lighting" in types:
        target = np.clip(target * light, 0, 1).astype(np.float32)
    if "style" in types:
        target = _apply_style(target, style)

    references: list[tuple[str, str, Image]] = []
    for spec in subjects:
        alone = np.ones((size, size, 3), np.float32)
        _paint_subject(alone, spec, size / 2, size / 2, 0.38 * size)
        references.append(("subject", spec.name, alone))
    phrases = [f"the {spec.name[2:]} from image {i + 1}" for i, spec in enumerate(subjects)]
    if "bg" in types:
        references.append(("background", background_kind, background))
        phrases.append(f"in front of the {background_kind} of image {len(references)}")
    if "lighting" in types:
        references.append(("lighting", "lighting", _lighting_reference(size, light)))
        phrases.append(f"lit like image {len(references)}")
    if has_pose:
        assert keypoints is not None
        skeleton = np.zeros((size, size, 3), np.float32)
        _draw_skeleton(skeleton, keypoints, max(1.0, size / 48), _skeleton_colours(len(_LIMBS)))
        references.append(("pose", "person", skeleton))
        phrases.append(f"with a person posed like image {len(references)}")
    if "style" in types:
        other = make_instance("subject", 3, np.random.default_rng(rng.integers(2**32)), size=size).target
        references.append(("style", style, _apply_style(other, style)))
        phrases.append(f"all in the {style} style of image {len(references)}")
    prompt = "Compose " + ", ".join(phrases) + "."
    return SyntheticInstance(category, prompt, references, target, boxes, keypoints, masks)


def _save_png(image: Image, path: Path) -> None:
    from PIL import Image as PILImage  # only needed when writing files

    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(np.round(image * 255).astype(np.uint8)).save(path)


_REFERENCE_KINDS: Final[dict[str, ReferenceKind]] = {
    "subject": "subject",
    "background": "background",
    "lighting": "lighting",
    "style": "style",
    "pose": "pose_skeleton",
}
_FILE_NAMES: Final[dict[str, str]] = {
    "background": "background/background.png",
    "lighting": "lighting/lighting_reference.png",
    "style": "style/reference.png",
    "pose": "pose/skeleton/person.png",
}


def _write_instance(inst: SyntheticInstance, index: int, split_dir: Path) -> BenchInstance:
    case = f"{inst.category}/{len(inst.references)}/{index}"
    refs = []
    for slot, (kind, name, image) in enumerate(inst.references, start=1):
        rel = f"{case}/transfer_subjects/{name}.png" if kind == "subject" else f"{case}/{_FILE_NAMES[kind]}"
        _save_png(image, split_dir / rel)
        keypoints = f"{case}/pose/keypoints/person.json" if kind == "pose" else None
        subject = name if kind == "subject" else None
        refs.append(Reference(rel, _REFERENCE_KINDS[kind], slot, subject, keypoints))
    if inst.pose_keypoints is not None:
        record = {
            "image_name": "person.png",
            "num_persons": 1,
            "persons": [{"person_id": 0, "keypoints": inst.pose_keypoints.ravel().tolist()}],
        }
        (split_dir / f"{case}/pose/keypoints").mkdir(parents=True, exist_ok=True)
        (split_dir / f"{case}/pose/keypoints/person.json").write_text(json.dumps(record))
    target = f"{case}/{index}.png"
    _save_png(inst.target, split_dir / target)
    return BenchInstance(index, inst.category, inst.prompt, tuple(refs), target)


def write_omniref_mini(
    root: str | Path,
    *,
    n_train: int = 200,
    n_test: int = 60,
    seed: int = 0,
    size: int = 64,
    progress: bool = False,
) -> dict[str, Path]:
    """Write OmniRef-mini train and test splits in the OmniRef-Bench format.

    Each split folder holds ``metadata.json`` (readable by
    [`load_benchmark`][rewardkit.evaluation.load_benchmark]), the images under
    ``{category}/{n_refs}/{index}/``, AlphaPose-style keypoint files for pose references, and
    ``ground_truth.json`` (per index: subject boxes in the target, in prompt order, and the
    target's pose keypoints). Instances cycle through every (category, reference count) pair;
    the result is a pure function of ``seed``.

    Args:
        root: output folder; gets ``train/`` and ``test/``.
        n_train: number of training instances.
        n_test: number of test instances.
        seed: random seed.
        size: image side in pixels.
        progress: show a progress bar.

    Returns:
        ``{"train": path/to/train/metadata.json, "test": ...}``.
    """
    from tqdm import tqdm

    pairs = [(c, n) for c, counts in CATEGORIES.items() for n in counts]
    out: dict[str, Path] = {}
    for split, count, offset in (("train", n_train, 0), ("test", n_test, 1)):
        split_dir = Path(root) / split
        rng = np.random.default_rng([seed, offset])
        order = rng.permutation(len(pairs))
        instances, truth = [], {}
        for i in tqdm(range(count), desc=f"OmniRef-mini {split}", disable=not progress):
            category, n_refs = pairs[order[i % len(pairs)]]
            inst = make_instance(category, n_refs, np.random.default_rng([seed, offset, i]), size=size)
            instances.append(_write_instance(inst, i, split_dir))
            truth[str(i)] = {
                "subject_boxes": [list(b) for b in inst.subject_boxes],
                "pose_keypoints": None if inst.pose_keypoints is None else inst.pose_keypoints.tolist(),
            }
        out[split] = write_benchmark(instances, split_dir / "metadata.json")
        (split_dir / "ground_truth.json").write_text(json.dumps(truth))
    return out
