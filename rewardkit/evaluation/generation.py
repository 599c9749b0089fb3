"""Generating benchmark images with any registered backbone, and reading image folders back.

The file-naming contract: one image per benchmark item, named ``{index}.png`` after the item's
``index`` field, in one folder per method.
[`generate_images`][rewardkit.evaluation.generation.generate_images] writes such a folder
(resumable: existing images are kept), and
[`find_images`][rewardkit.evaluation.generation.find_images] reads any folder that follows the
contract, whatever produced it, ignoring files whose name is not an integer.

The evaluation settings of the paper are the defaults of
[`GenerationSettings`][rewardkit.evaluation.generation.GenerationSettings]: 20 steps of the
deterministic (ODE) sampler from the same seed-1 noise for every item, classifier-free guidance 4
with an empty negative prompt. The settings are written to ``generation.json`` in the folder, and
a resumed run with different settings is refused, so a folder never mixes two configurations.
"""

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from numpy.typing import NDArray

from rewardkit.evaluation._images import load_rgb, save_png, to_uint8

__all__ = [
    "IMAGE_SUFFIXES",
    "GenerationItem",
    "GenerationResult",
    "GenerationSettings",
    "find_images",
    "generate_images",
]

logger = logging.getLogger("rewardkit.evaluation")

#: File suffixes read as images (lower case).
IMAGE_SUFFIXES: Final[tuple[str, ...]] = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SETTINGS_FILE: Final[str] = "generation.json"


@dataclass(frozen=True)
class GenerationItem:
    """What one image is generated from.

    Attributes:
        index: the item id; the image is written as ``{index}.png``.
        prompt: the instruction.
        references: absolute paths of the reference images, in prompt order.
    """

    index: int
    prompt: str
    references: tuple[Path, ...]


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling settings of an evaluation run (the defaults are the paper's).

    Attributes:
        num_steps: sampling steps (paper: 20).
        seed: seed of the initial noise; every item starts from the same seeded generator, so
            an image does not depend on batching, order or resumption (paper: 1).
        guidance_scale: classifier-free guidance scale (the reference script: 4.0; 1 = off).
        negative_prompt: the negative prompt used when ``guidance_scale > 1``.
        height: target height in pixels (``None``: the backbone's rule, e.g. the last
            reference's aspect ratio at its ``resolution``).
        width: target width in pixels.
        batch_size: items whose conditions are encoded together (each is then sampled on its
            own: the backbones take one set of reference shapes per forward).
    """

    num_steps: int = 20
    seed: int = 1
    guidance_scale: float = 4.0
    negative_prompt: str = ""
    height: int | None = None
    width: int | None = None
    batch_size: int = 4

    def __post_init__(self) -> None:
        for name in ("num_steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not self.guidance_scale >= 1.0:
            raise ValueError(f"guidance_scale must be >= 1 (1 = no guidance), got {self.guidance_scale}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 16):
                raise ValueError(f"{name} must be None or an int >= 16, got {value!r}")

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (``batch_size`` excluded: it does not change images)."""
        record = asdict(self)
        record.pop("batch_size")
        return record


@dataclass(frozen=True)
class GenerationResult:
    """What [`generate_images`][rewardkit.evaluation.generation.generate_images] did.

    Attributes:
        folder: the output folder.
        written: indices generated in this call.
        skipped: indices whose image already existed.
    """

    folder: Path
    written: tuple[int, ...] = ()
    skipped: tuple[int, ...] = field(default=())


def find_images(folder: str | Path) -> dict[int, Path]:
    """Map each ``{index}.{png,jpg,jpeg,webp,bmp}`` in a folder to its index.

    Files whose stem is not a non-negative integer (``generation.json``, ``notes.txt``,
    ``.DS_Store``, ``12_old.png``) are ignored.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: two files with the same index (e.g. ``3.png`` and ``3.jpg``).
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    found: dict[int, Path] = {}
    ignored = 0
    for path in sorted(root.iterdir()):
        stem = path.stem
        if not (
            path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and stem.isdigit() and stem.isascii()
        ):
            ignored += path.name != SETTINGS_FILE and not path.name.startswith(".")
            continue
        index = int(stem)
        if index in found:
            raise ValueError(f"two images for index {index} in {root}: {found[index].name} and {path.name}")
        found[index] = path
    if ignored:
        logger.info("%s: ignored %d file(s) not named {index}.<image suffix>", root, ignored)
    return found


def _load_reference(path: Path) -> Any:
    from PIL import Image

    return Image.fromarray(load_rgb(path))


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_settings(folder: Path, record: dict[str, Any], overwrite: bool) -> None:
    file = folder / SETTINGS_FILE
    if file.is_file() and not overwrite:
        previous = json.loads(file.read_text(encoding="utf-8"))
        if previous != record:
            old, new = _flat(previous), _flat(record)
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ValueError(
                f"{folder} holds images generated with other settings (differ in {changed}); use "
                "another folder, delete it, or pass overwrite=True (--overwrite) to regenerate"
            )
    folder.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(record, indent=2), encoding="utf-8")


def generate_images(
    backbone: Any,
    items: Sequence[GenerationItem],
    folder: str | Path,
    *,
    settings: GenerationSettings | None = None,
    overwrite: bool = False,
    progress: bool = True,
    describe: dict[str, Any] | None = None,
) -> GenerationResult:
    """Generate ``{index}.png`` for every item with a backbone; resumable.

    Each item's references are loaded as RGB, its condition encoded (``settings.batch_size``
    items per ``encode_condition`` call), and one image sampled with
    [`rollout`][rewardkit.backbone.rollout] with no SDE window (a deterministic ODE sampler),
    ``settings.guidance_scale`` and a generator seeded with ``settings.seed``. Images are
    written atomically, so an interrupted run resumes cleanly: items whose image exists are
    skipped unless ``overwrite``.

    Args:
        backbone: any [`Backbone`][rewardkit.backbone.Backbone] (e.g. from
            [`load_backbone`][rewardkit.load_backbone], with ``adapter=`` a LoRA directory).
        items: what to generate.
        folder: output folder (created).
        settings: sampling settings (default: the paper's).
        overwrite: regenerate existing images (and replace ``generation.json``).
        progress: show a progress bar.
        describe: extra fields recorded in ``generation.json`` (backbone name, checkpoint, LoRA).

    Returns:
        A [`GenerationResult`][rewardkit.evaluation.generation.GenerationResult].

    Raises:
        ValueError: the folder holds images made with other settings (see the module notes).
    """
    from tqdm import tqdm

    from rewardkit.backbone.rollout import rollout

    settings = settings or GenerationSettings()
    out = Path(folder)
    record = {"backbone": getattr(backbone, "name", type(backbone).__name__), **(describe or {})}
    record["settings"] = settings.to_json()
    _check_settings(out, record, overwrite)
    existing = find_images(out)
    todo = [it for it in items if overwrite or it.index not in existing]
    skipped = tuple(it.index for it in items if not overwrite and it.index in existing)
    written: list[int] = []
    negative = settings.negative_prompt if settings.guidance_scale > 1 else None
    bar = tqdm(total=len(todo), desc=f"generating {out.name}", unit="img", disable=not progress)
    for start in range(0, len(todo), settings.batch_size):
        chunk = todo[start : start + settings.batch_size]
        references = [[_load_reference(p) for p in it.references] for it in chunk]
        conditions = backbone.encode_condition(
            [it.prompt for it in chunk],
            references,
            height=settings.height,
            width=settings.width,
            negative_prompt=negative,
        )
        for item, condition in zip(chunk, conditions, strict=True):
            result = rollout(
                backbone,
                condition,
                group_size=1,
                num_steps=settings.num_steps,
                generator=torch.Generator().manual_seed(settings.seed),
                sde_steps=None,
                guidance_scale=settings.guidance_scale,
            )
            assert result.images is not None  # decode=True (the default) always returns images
            image: NDArray[np.uint8] = to_uint8(result.images[0])
            for stale in out.glob(f"{item.index}.*"):  # an old .jpg must not shadow the new .png
                if stale.suffix.lower() in IMAGE_SUFFIXES:
                    stale.unlink()
            save_png(image, out / f"{item.index}.png")
            written.append(item.index)
            bar.update(1)
    bar.close()
    return GenerationResult(out, tuple(written), skipped)
