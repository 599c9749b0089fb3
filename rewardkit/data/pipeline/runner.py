"""The resumable, sharded build: plan, make each record, append it, merge the shards.

Durability: a record's images are written first (each atomically), then its JSON line is
appended to the shard's JSONL and fsynced. A kill loses at most the record in flight; a re-run
reads the JSONL (ignoring a torn last line), skips the finished records and makes the rest
with the same seeds. [`finalize`][rewardkit.data.pipeline.runner.finalize] merges every
shard's JSONL into OmniRef-Bench ``metadata.json`` files (train and test) that the recipes and
the evaluation read unchanged, plus ``ground_truth.json`` and ``summary.json`` (what each
filter dropped and why).
"""

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from rewardkit.data.pipeline.record import DataRecord, ReferenceImage, SceneSpec
from rewardkit.data.pipeline.steps import (
    Box,
    Grounder,
    Image,
    ImageProvider,
    PoseEstimator,
    RecordFilter,
    RecordImages,
    RecordPlan,
    Segmenter,
    TextProvider,
    compose_prompt,
    skeleton_image,
    subject_reference,
)
from rewardkit.evaluation._images import save_png

__all__ = ["Providers", "ShardReport", "finalize", "make_record", "plan_records", "run_shard", "shard_path"]

logger = logging.getLogger("rewardkit.data")

#: Where each reference type is written inside a record's folder (the paths tell the
#: OmniRef-Bench loader each reference's type).
_FILES = {
    "background": "background/background.png",
    "lighting": "lighting/lighting_reference.png",
    "style": "style/reference.png",
    "pose": "pose/skeleton/person.png",
}
_KINDS = {"background": "background", "lighting": "lighting", "style": "style", "pose": "pose_skeleton"}


@dataclass
class Providers:
    """The stage implementations of one build.

    Attributes:
        text: writes each record's subjects and scene.
        images: renders targets and the edited references.
        grounder: finds each subject in the target.
        segmenter: masks each found subject.
        pose: keypoints of the target's person (needed only by pose categories).
        filters: applied in order; every filter scores every record, the first to reject drops it.
    """

    text: TextProvider
    images: ImageProvider
    grounder: Grounder
    segmenter: Segmenter
    pose: PoseEstimator | None = None
    filters: list[RecordFilter] = field(default_factory=list)


def plan_records(
    count: int,
    *,
    categories: Mapping[str, Sequence[int]],
    seed: int = 0,
    test_fraction: float = 0.0,
    size: int = 512,
) -> list[RecordPlan]:
    """The records of a build: type combinations cycled in a seeded order, one seed each.

    Args:
        count: number of records.
        categories: type combination → the reference counts to cycle through.
        seed: the build's seed; record ``i``'s seed is drawn from ``(seed, i)``.
        test_fraction: the share of records held out as the test split.
        size: image side in pixels.

    Returns:
        ``count`` plans; the same arguments give the same plans.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    pairs = [(c, int(n)) for c, counts in categories.items() for n in counts]
    for category, n_refs in pairs:
        tokens = category.split("_")
        if tokens[0] != "subject" or not set(tokens[1:]) <= {"bg", "lighting", "pose", "style"}:
            raise ValueError(
                f"category {category!r}: expected 'subject' followed by any of _bg, _lighting, _pose, _style"
            )
        if n_refs < len(tokens):
            raise ValueError(f"category {category!r} needs at least {len(tokens)} references, got {n_refs}")
    if not pairs:
        raise ValueError("categories is empty: name at least one type combination with a reference count")
    rng = np.random.default_rng([seed, 17])
    order = rng.permutation(len(pairs))
    held_out = set(rng.permutation(count)[: round(count * test_fraction)].tolist())
    plans = []
    for i in range(count):
        category, n_refs = pairs[order[i % len(pairs)]]
        record_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        split = "test" if i in held_out else "train"
        plans.append(RecordPlan(i, category, n_refs, record_seed, split, size))
    return plans


def _check_image(name: str, image: Any, size: int) -> Image:
    array = np.asarray(image)
    if array.shape != (size, size, 3) or array.dtype != np.uint8:
        raise ValueError(f"{name} must be a ({size}, {size}, 3) uint8 image, got {array.shape} {array.dtype}")
    return array


_UNSAFE = re.compile(r"[^\w ,.'()&+-]+")


def _file_stem(name: str, *, taken: Sequence[str]) -> str:
    """A file name for a subject (the loader reads it back as the detector caption).

    Path separators and other characters a file system may refuse become ``-``; a name that
    another subject of the record already uses gets `` (2)``, `` (3)``...
    """
    stem = _UNSAFE.sub("-", name).strip(" .-")[:80] or "subject"
    used = {PurePosixPath(path).stem for path in taken}
    candidate, n = stem, 2
    while candidate in used:
        candidate, n = f"{stem} ({n})", n + 1
    return candidate


def _within(mask: NDArray[np.bool_], box: Box) -> NDArray[np.bool_]:
    """``mask`` with everything outside ``box`` cleared (the box's pixel range, as cropped)."""
    h, w = mask.shape
    x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    out = np.zeros_like(mask, dtype=bool)
    out[y1:y2, x1:x2] = mask[y1:y2, x1:x2]
    return out


def make_record(plan: RecordPlan, providers: Providers, split_dir: Path) -> DataRecord:
    """Run every stage for one record; write its images (if it is kept) under ``split_dir``.

    A stage that fails or finds nothing drops the record with the stage and the reason
    (``dropped_by`` = ``"error"``, ``"grounding"`` or ``"pose"``); then the filters run.
    """
    spec = providers.text.scene(plan)
    record = DataRecord(plan.index, plan.split, plan.category, plan.n_refs, spec)
    if len(spec.subjects) != plan.n_subjects:
        raise ValueError(
            f"record {plan.index}: the text provider wrote {len(spec.subjects)} subjects, "
            f"the plan needs {plan.n_subjects}"
        )
    case = f"{plan.category}/{plan.n_refs}/{plan.index}"
    target = _check_image("the target", providers.images.target(plan, spec), plan.size)
    names = [s.name for s in spec.subjects]
    boxes: list[Box | None] = list(providers.grounder.boxes(target, names, plan=plan))
    found = [b for b in boxes if b is not None]
    found_masks = iter(providers.segmenter.masks(target, found, plan=plan) if found else [])
    # A mask counts inside its box only (SAM-style masks may bleed; the crop is the box anyway).
    masks: list[NDArray[np.bool_] | None] = [
        None if b is None else _within(next(found_masks), b) for b in boxes
    ]
    record.boxes = boxes
    missing = [
        n for n, b, m in zip(names, boxes, masks, strict=True) if b is None or m is None or not m.any()
    ]
    if missing:
        record.dropped_by, record.reason = "grounding", f"not found in the target: {', '.join(missing)}"
        return record

    images: list[tuple[ReferenceImage, Image]] = []
    for name, box, mask in zip(names, boxes, masks, strict=True):
        assert box is not None and mask is not None
        ref = subject_reference(target, box, mask, plan.size)
        stem = _file_stem(name, taken=[r.path for r, _ in images])
        images.append((ReferenceImage("subject", name, f"{case}/transfer_subjects/{stem}.png"), ref))
    for kind in plan.types:
        path = f"{case}/{_FILES[kind]}"
        if kind == "pose":
            if providers.pose is None:
                raise ValueError(
                    f"record {plan.index} ({plan.category}) needs a pose provider; none is configured"
                )
            keypoints = providers.pose.keypoints(target, plan=plan)
            if keypoints is None:
                record.dropped_by, record.reason = "pose", "no person found in the target"
                return record
            record.pose_keypoints = np.asarray(keypoints, np.float64).tolist()
            keypoints_path = f"{case}/pose/keypoints/person.json"
            ref_image = skeleton_image(np.asarray(keypoints), plan.size)
            images.append((ReferenceImage(_KINDS[kind], "person", path, keypoints_path), ref_image))
        else:
            ref_image = _check_image(
                f"the {kind} reference", providers.images.reference(plan, spec, kind, target), plan.size
            )
            images.append((ReferenceImage(_KINDS[kind], getattr(spec, kind) or kind, path), ref_image))
    record.references = [r for r, _ in images]
    record.target = f"{case}/{plan.index}.png"
    record.prompt = compose_prompt(names, plan.types, {"background": spec.background, "style": spec.style})

    in_memory = RecordImages(target, tuple(im for _, im in images), tuple(masks))
    for check in providers.filters:
        verdict = check.check(record, in_memory)
        record.scores[check.name] = float(verdict.score)
        if not verdict.keep and record.dropped_by is None:
            record.dropped_by, record.reason = check.name, verdict.reason
    if record.kept:
        for written, pixels in images:
            save_png(pixels, split_dir / written.path)
        if record.pose_keypoints is not None:
            kp_file = split_dir / f"{case}/pose/keypoints/person.json"
            kp_file.parent.mkdir(parents=True, exist_ok=True)
            flat = [v for row in record.pose_keypoints for v in row]
            content = {
                "image_name": "person.png",
                "num_persons": 1,
                "persons": [{"person_id": 0, "keypoints": flat}],
            }
            kp_file.write_text(json.dumps(content))
        save_png(target, split_dir / record.target)
    return record


def shard_path(out: str | Path, shard: int, num_shards: int) -> Path:
    """The JSONL file of one shard."""
    return Path(out) / "records" / f"shard-{shard:03d}-of-{num_shards:03d}.jsonl"


def _read_records(path: Path, *, repair: bool) -> list[DataRecord]:
    """The records of a shard file; a torn last line (a kill mid-write) is cut off if ``repair``."""
    if not path.is_file():
        return []
    records, good_bytes = [], 0
    with path.open("rb") as f:
        for line in f:
            try:
                records.append(DataRecord.from_json(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError):
                if line.endswith(b"\n"):
                    raise ValueError(
                        f"{path}: line {len(records) + 1} is not a record; remove the file to rebuild"
                    ) from None
                break  # the torn tail of a killed write
            good_bytes += len(line)
    if repair and good_bytes != path.stat().st_size:
        with path.open("r+b") as f:
            f.truncate(good_bytes)
    return records


@dataclass(frozen=True)
class ShardReport:
    """What one ``run_shard`` call did.

    Attributes:
        planned: records this shard owns.
        skipped: finished in an earlier run.
        made: made in this run.
        kept: of those made, how many every filter kept.
    """

    planned: int
    skipped: int
    made: int
    kept: int


def run_shard(
    plans: Sequence[RecordPlan],
    providers: Providers,
    out: str | Path,
    *,
    num_shards: int = 1,
    shard: int = 0,
    progress: bool = False,
    on_record: Callable[[DataRecord], None] | None = None,
) -> ShardReport:
    """Make this shard's records (``index % num_shards == shard``) that are not finished yet.

    Args:
        plans: every record of the build (from [`plan_records`][rewardkit.data.pipeline.runner.plan_records]).
        providers: the stage implementations.
        out: the build folder.
        num_shards: how many shards the build is split into (one per machine or process).
        shard: this shard, ``0 … num_shards − 1``.
        progress: show a progress bar.
        on_record: called with each finished record (e.g. to log it).

    Returns:
        A [`ShardReport`][rewardkit.data.pipeline.runner.ShardReport].
    """
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in 0 … num_shards − 1 = {num_shards - 1}, got shard={shard}")
    from tqdm import tqdm

    out = Path(out)
    log = shard_path(out, shard, num_shards)
    log.parent.mkdir(parents=True, exist_ok=True)
    done = {r.index for r in _read_records(log, repair=True)}
    mine = [p for p in plans if p.index % num_shards == shard]
    todo = [p for p in mine if p.index not in done]
    kept = 0
    with log.open("a", encoding="utf-8") as f:
        for plan in tqdm(todo, desc=f"records (shard {shard + 1}/{num_shards})", disable=not progress):
            try:
                record = make_record(plan, providers, out / plan.split)
            except Exception as err:  # one bad record must not stop a long build: recorded, counted
                record = DataRecord(plan.index, plan.split, plan.category, plan.n_refs, SceneSpec((), ""))
                record.dropped_by, record.reason = "error", f"{type(err).__name__}: {err}"
                logger.warning("record %d failed: %s", plan.index, record.reason)
            f.write(json.dumps(record.to_json()) + "\n")
            f.flush()
            os.fsync(f.fileno())
            kept += record.kept
            if on_record is not None:
                on_record(record)
    return ShardReport(planned=len(mine), skipped=len(mine) - len(todo), made=len(todo), kept=kept)


def finalize(out: str | Path, plans: Sequence[RecordPlan]) -> dict[str, Any]:
    """Merge every shard's records into the OmniRef-Bench files of each split.

    Writes ``{train,test}/metadata.json`` (kept records, by index), ``{train,test}/ground_truth.json``
    (subject boxes and pose keypoints, as OmniRef-mini writes them) and ``summary.json``.

    Returns:
        The summary: planned, present, kept, per split; and per filter/stage the number of
        records it dropped with up to three example reasons.
    """
    from rewardkit.evaluation.benchmark import BenchInstance, Reference, ReferenceKind, write_benchmark

    out = Path(out)
    records: dict[int, DataRecord] = {}
    for path in sorted((out / "records").glob("shard-*.jsonl")):
        for record in _read_records(path, repair=False):
            records.setdefault(record.index, record)
    dropped: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    splits: dict[str, list[DataRecord]] = {"train": [], "test": []}
    for index in sorted(records):
        record = records[index]
        if record.kept:
            splits[record.split].append(record)
        else:
            assert record.dropped_by is not None
            dropped[record.dropped_by] += 1
            reasons = examples.setdefault(record.dropped_by, [])
            if len(reasons) < 3:
                reasons.append(f"record {index}: {record.reason}")
    written = {}
    for split, kept in splits.items():
        if not kept:
            continue
        instances = [
            BenchInstance(
                r.index,
                r.category,
                r.prompt,
                tuple(
                    Reference(
                        ref.path,
                        cast(ReferenceKind, ref.kind),
                        slot,
                        ref.name if ref.kind == "subject" else None,
                        ref.keypoints_path,
                    )
                    for slot, ref in enumerate(r.references, start=1)
                ),
                r.target,
            )
            for r in kept
        ]
        written[split] = str(write_benchmark(instances, out / split / "metadata.json"))
        truth = {
            str(r.index): {
                "subject_boxes": [list(b) for b in r.boxes if b is not None],
                "pose_keypoints": r.pose_keypoints,
            }
            for r in kept
        }
        (out / split / "ground_truth.json").write_text(json.dumps(truth))
    summary = {
        "planned": len(plans),
        "present": len(records),
        "missing": len({p.index for p in plans} - set(records)),
        "kept": {split: len(kept) for split, kept in splits.items()},
        "dropped": dict(sorted(dropped.items())),
        "examples": examples,
        "metadata": written,
    }
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, out / "summary.json")
    return summary
