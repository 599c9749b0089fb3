"""A contact sheet: references, target and every run's image side by side, one row per instance.

Numbers hide what a person sees at a glance (a collapsed method, a wrong subject, a pasted
reference). [`contact_sheet`][rewardkit.evaluation.contact_sheet.contact_sheet] draws, for a
small fixed set of instances, the references as small thumbnails, the ground-truth target and
each run's ``{index}.png`` in a grid with the run names as column headers and the instance
(``#index``, category, number of references) as row label. Drawn with Pillow only.
"""

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from rewardkit.evaluation.benchmark import BenchInstance, Benchmark
from rewardkit.evaluation.generation import find_images

__all__ = ["contact_sheet", "pick_instances"]

_PAD: Final[int] = 4
_BACKGROUND: Final[tuple[int, int, int]] = (255, 255, 255)
_CELL: Final[tuple[int, int, int]] = (232, 232, 232)  # behind thumbnails and empty slots
_INK: Final[tuple[int, int, int]] = (20, 20, 20)
_FAINT: Final[tuple[int, int, int]] = (120, 120, 120)


def pick_instances(bench: Benchmark, max_rows: int = 8) -> list[BenchInstance]:
    """A deterministic, category-spread choice of up to ``max_rows`` instances.

    Round robin over the categories in order of first appearance: the first instance of each
    category, then the second of each, and so on. When some instances have a target, only
    those are chosen.

    Args:
        bench: the benchmark.
        max_rows: the most instances to return (>= 1).

    Raises:
        ValueError: ``max_rows`` is not an int >= 1.
    """
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"max_rows must be an int >= 1, got {max_rows!r}")
    pool = [inst for inst in bench if inst.target is not None] or list(bench)
    by_category: dict[str, list[BenchInstance]] = {}
    for inst in pool:
        by_category.setdefault(inst.category, []).append(inst)
    chosen: list[BenchInstance] = []
    depth = 0
    while len(chosen) < min(max_rows, len(pool)):
        for group in by_category.values():
            if depth < len(group) and len(chosen) < max_rows:
                chosen.append(group[depth])
        depth += 1
    return chosen


def _fit(draw: Any, font: Any, text: str, width: int) -> str:
    """``text``, shortened with ``..`` until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "..", font=font) > width:
        text = text[:-1]
    return text + ".."


def contact_sheet(
    bench: Benchmark,
    folders: Mapping[str, str | Path],
    path: str | Path,
    *,
    instances: Sequence[int] | None = None,
    max_rows: int = 8,
    thumb: int = 64,
) -> Path:
    """Draw references, target and each run's image per instance into one PNG.

    Layout, left to right: the row label (``#index``, category, ``n refs``); the references as
    ``thumb``-pixel thumbnails in two rows (top row first), padded with empty slots to the
    largest count; the target and then each run's image at ``2 * thumb`` pixels (aspect kept,
    padded). The first row holds the column headers (``references``, ``target``, the run
    names, shortened to fit). A missing target or image leaves an empty cell marked ``missing``.

    Args:
        bench: the benchmark (with its ``root``, to find references and targets).
        folders: run name → folder of ``{index}.png`` images, in column order.
        path: the PNG to write (parent folders are created).
        instances: the ``index`` fields of the rows, in order; ``None`` →
            [`pick_instances`][rewardkit.evaluation.contact_sheet.pick_instances]
            (``max_rows``, spread over categories).
        max_rows: the most rows when ``instances`` is ``None``.
        thumb: reference thumbnail side in pixels (>= 16); target and run images are twice it.

    Returns:
        ``path``.

    Raises:
        ValueError: a bad ``thumb`` / ``max_rows``, an empty benchmark or ``instances``, or
            an index not in the benchmark (the message names ``instances``).
        FileNotFoundError: a run folder does not exist.
    """
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    if isinstance(thumb, bool) or not isinstance(thumb, int) or thumb < 16:
        raise ValueError(f"thumb must be an int >= 16, got {thumb!r}")
    if instances is None:
        rows = pick_instances(bench, max_rows)
    else:
        rows = []
        for index in instances:
            try:
                rows.append(bench.by_index(index))
            except KeyError as err:
                raise ValueError(f"instances names index {index!r}, which is not in the benchmark") from err
    if not rows:
        raise ValueError("instances must name at least one instance (the benchmark is empty?)")
    images = {name: find_images(folder) for name, folder in folders.items()}

    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line = max(12, math.ceil(probe.textbbox((0, 0), "Ag#", font=font)[3])) + 2
    big = 2 * thumb
    labels = [(f"#{inst.index}", inst.category, f"{inst.n_refs} refs") for inst in rows]
    label_w = max(60, *(math.ceil(probe.textlength(t, font=font)) for lab in labels for t in lab)) + 2 * _PAD
    label_w = min(label_w, 3 * thumb)  # very long categories are shortened instead
    ref_cols = max(1, math.ceil(max(inst.n_refs for inst in rows) / 2))
    ref_w = ref_cols * thumb + (ref_cols - 1) * _PAD
    columns = ["target", *folders]
    header_h = line + 2 * _PAD
    row_h = max(big + _PAD, 3 * line) + _PAD
    width = _PAD + label_w + ref_w + len(columns) * (big + _PAD) + 2 * _PAD
    height = header_h + len(rows) * row_h + _PAD
    sheet = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)

    def paste(source: Path | None, x: int, y: int, side: int) -> None:
        if source is None or not source.is_file():
            draw.rectangle((x, y, x + side - 1, y + side - 1), fill=_CELL)
            text = _fit(draw, font, "missing", side - 2 * _PAD)
            draw.text((x + _PAD, y + _PAD), text, fill=_FAINT, font=font)
            return
        with Image.open(source) as opened:
            tile = ImageOps.pad(opened.convert("RGB"), (side, side), Image.Resampling.BILINEAR, color=_CELL)
        sheet.paste(tile, (x, y))

    ref_x = _PAD + label_w
    image_x = ref_x + ref_w + 2 * _PAD
    draw.text((ref_x, _PAD), _fit(draw, font, "references", ref_w), fill=_INK, font=font)
    for k, name in enumerate(columns):
        draw.text((image_x + k * (big + _PAD), _PAD), _fit(draw, font, name, big), fill=_INK, font=font)
    for r, (inst, label) in enumerate(zip(rows, labels, strict=True)):
        y = header_h + r * row_h
        for k, text in enumerate(label):
            fitted = _fit(draw, font, text, label_w - 2 * _PAD)
            draw.text((_PAD, y + k * line), fitted, fill=_INK if k == 0 else _FAINT, font=font)
        for slot in range(2 * ref_cols):
            x = ref_x + (slot % ref_cols) * (thumb + _PAD)  # row-major: read like text
            ref_y = y + (slot // ref_cols) * (thumb + _PAD)
            source = bench.resolve(inst.references[slot].path) if slot < inst.n_refs else None
            if source is None:  # padding up to the largest reference count
                draw.rectangle((x, ref_y, x + thumb - 1, ref_y + thumb - 1), outline=_CELL)
            else:
                paste(source, x, ref_y, thumb)
        paste(bench.resolve(inst.target) if inst.target is not None else None, image_x, y, big)
        for k, name in enumerate(folders, start=1):
            paste(images[name].get(inst.index), image_x + k * (big + _PAD), y, big)

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(target, format="PNG")
    return target
