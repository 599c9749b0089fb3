import itertools
import math

import cv2  # the eval extra: the faithful metric is defined by OpenCV's calls
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given

import rewardkit


def images(h: int = 24, w: int = 24) -> st.SearchStrategy[np.ndarray]:
    return st.integers(0, 2**32 - 1).map(
        lambda seed: np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    )


def _srgb_lightness(level: int) -> float:
    """L* of a grey sRGB level, on OpenCV's 0-255 scale, by hand from the CIE formula."""
    c = level / 255.0
    y = c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    lstar = 116.0 * y ** (1 / 3) - 16.0 if y > 0.008856 else 903.3 * y
    return lstar * 255.0 / 100.0


def test_identical_images_score_one_everywhere() -> None:
    img = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    score = rewardkit.lighting_consistency(img, img, size=48)
    assert score.as_dict() == {k: 1.0 for k in score.as_dict()}


@pytest.mark.parametrize(("g1", "g2"), [(100, 140), (30, 200), (128, 129)])
def test_uniform_grey_images_by_hand(g1: int, g2: int) -> None:
    a = np.full((30, 30, 3), g1, np.uint8)
    b = np.full((30, 30, 3), g2, np.uint8)
    s = rewardkit.lighting_consistency(a, b, size=30)
    # OpenCV stores L* on 0-255 as an integer: the by-hand value, rounded.
    lightness1, lightness2 = round(_srgb_lightness(g1)), round(_srgb_lightness(g2))
    assert s.luminance == pytest.approx(max(0.0, 1 - abs(lightness1 - lightness2) / 50), abs=1e-9)
    assert s.contrast == 1.0  # p95 == p5 on both sides
    assert s.color_temp == 1.0  # grey has a = b = 128
    assert s.light_dist == 1.0  # both grids flat
    assert s.shadow_dist == (1.0 if g1 // 4 == g2 // 4 else 0.0)  # same or disjoint histogram bins
    weights = rewardkit.LIGHTING_WEIGHTS
    assert s.total == pytest.approx(sum(weights[k] * v for k, v in s.as_dict().items() if k != "total"))


@given(images(), images())
def test_symmetric_and_in_unit_interval(a: np.ndarray, b: np.ndarray) -> None:
    for faithful in (False, True):
        ab = rewardkit.lighting_consistency(a, b, size=24, faithful=faithful)
        ba = rewardkit.lighting_consistency(b, a, size=24, faithful=faithful)
        for x, y in zip(ab.as_dict().values(), ba.as_dict().values(), strict=True):
            assert x == pytest.approx(y, abs=1e-12)
            assert 0.0 <= x <= 1.0


def test_brightening_degrades_luminance_monotonically() -> None:
    base = np.random.default_rng(2).integers(40, 120, (32, 32, 3), dtype=np.uint8)
    scores = [
        rewardkit.lighting_consistency(
            base, np.clip(base.astype(int) + d, 0, 255).astype(np.uint8), size=32
        ).luminance
        for d in (0, 5, 10, 20)
    ]
    assert scores[0] == 1.0
    assert all(x > y for x, y in itertools.pairwise(scores))


def test_light_direction_is_what_light_dist_sees() -> None:
    ramp = np.tile(np.linspace(20, 230, 60), (60, 1))
    left_lit = np.repeat(ramp[:, ::-1, None], 3, axis=2).astype(np.uint8)
    right_lit = np.repeat(ramp[:, :, None], 3, axis=2).astype(np.uint8)
    assert rewardkit.lighting_consistency(left_lit, right_lit, size=60).light_dist == pytest.approx(
        0.0, abs=1e-6
    )
    assert rewardkit.lighting_consistency(left_lit, left_lit[:, :, :], size=60).light_dist == 1.0


def test_accepts_tensors_and_pil() -> None:
    from PIL import Image

    img = np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    as_tensor = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
    ref = rewardkit.lighting_consistency(img, img[::-1].copy(), size=16)
    assert rewardkit.lighting_consistency(as_tensor, Image.fromarray(img[::-1].copy()), size=16) == ref


def _script_reference(ref_rgb: np.ndarray, gen_rgb: np.ndarray) -> float:
    """The reference evaluation script's arithmetic, written from the protocol with OpenCV.

    Files are read as BGR and resized to 512²; the grid is normalised without a guard (an
    all-black image gives NaN cells, whose correlation counts 0); a NaN histogram distance is 0.
    """
    imgs = [cv2.resize(np.ascontiguousarray(x[..., ::-1]), (512, 512)) for x in (ref_rgb, gen_rgb)]
    lab = [cv2.cvtColor(x, cv2.COLOR_BGR2LAB) for x in imgs]
    gray = [cv2.cvtColor(x, cv2.COLOR_BGR2GRAY) for x in imgs]
    lum = max(0.0, 1 - abs(np.mean(lab[0][:, :, 0]) - np.mean(lab[1][:, :, 0])) / 50)

    def contrast(g: np.ndarray) -> float:
        p5, p95 = np.percentile(g, 5), np.percentile(g, 95)
        return (p95 - p5) / (p95 + p5 + 1e-6)

    con = max(0.0, 1 - 2 * abs(contrast(gray[0]) - contrast(gray[1])))
    da = np.mean(lab[0][:, :, 1]) - np.mean(lab[1][:, :, 1])
    db = np.mean(lab[0][:, :, 2]) - np.mean(lab[1][:, :, 2])
    col = max(0.0, 1 - math.sqrt(da**2 + db**2) / 50)

    def grid(g: np.ndarray) -> np.ndarray:
        step_h, step_w = g.shape[0] // 3, g.shape[1] // 3
        m = np.array(
            [
                np.mean(g[i * step_h : (i + 1) * step_h, j * step_w : (j + 1) * step_w])
                for i in range(3)
                for j in range(3)
            ]
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            return m / np.sum(m)

    g1, g2 = grid(gray[0]), grid(gray[1])
    if np.std(g1) < 1e-6 or np.std(g2) < 1e-6:
        dist = 1.0 if (np.std(g1) < 1e-6 and np.std(g2) < 1e-6) else 0.0
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.corrcoef(g1, g2)[0, 1]
        dist = 0.0 if np.isnan(r) else (r + 1) / 2
    hists = [
        cv2.normalize(cv2.calcHist([g], [0], None, [64], [0, 256]), None, norm_type=cv2.NORM_L1) for g in gray
    ]
    d = cv2.compareHist(hists[0], hists[1], cv2.HISTCMP_BHATTACHARYYA)
    shadow = 0.0 if np.isnan(d) else max(0.0, 1 - d)
    return round(100 * (0.2 * lum + 0.15 * con + 0.2 * col + 0.25 * dist + 0.2 * shadow), 2) / 100


def _smooth_scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smoothly lit image (random noise would make every statistic trivial)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = (0.5 + 0.4 * np.sin(3 * xx + rng.uniform(0, 3)) * np.cos(2 * yy))[..., None] * rng.uniform(
        0.3, 1.0, 3
    )
    return np.clip(base * 255 + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def _vector_pair(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Test-vector inputs: random and edge-case uint8 pairs of assorted (non-square) sizes."""
    rng = np.random.default_rng(seed)
    sizes = [(90, 120), (512, 512), (37, 301), (7, 5), (600, 333), (1, 1), (3, 900)]
    (h1, w1), (h2, w2) = sizes[seed % len(sizes)], sizes[(seed * 3 + 1) % len(sizes)]
    if kind == "noise":
        return rng.integers(0, 256, (h1, w1, 3), dtype=np.uint8), rng.integers(
            0, 256, (h2, w2, 3), dtype=np.uint8
        )
    if kind == "smooth":
        return _smooth_scene(rng, h1, w1), _smooth_scene(rng, h2, w2)
    if kind == "one_pixel":  # identical but for one pixel by one level
        a = _smooth_scene(rng, h1, w1)
        b = a.copy()
        b[rng.integers(h1), rng.integers(w1), rng.integers(3)] ^= 1
        return a, b
    if kind == "black_vs_smooth":
        return np.zeros((h1, w1, 3), np.uint8), _smooth_scene(rng, h2, w2)
    if kind == "black_vs_black":
        return np.zeros((h1, w1, 3), np.uint8), np.zeros((h2, w2, 3), np.uint8)
    if kind == "uniform":
        return np.full((h1, w1, 3), rng.integers(256), np.uint8), np.full(
            (h2, w2, 3), rng.integers(256), np.uint8
        )
    raise AssertionError(kind)


VECTOR_KINDS = ("noise", "smooth", "one_pixel", "black_vs_smooth", "black_vs_black", "uniform")


@pytest.mark.parametrize("kind", VECTOR_KINDS)
@pytest.mark.parametrize("seed", range(5))
def test_faithful_mode_is_the_opencv_script(kind: str, seed: int) -> None:
    ref, gen = _vector_pair(kind, seed)
    assert rewardkit.lighting_consistency(ref, gen, faithful=True).total == pytest.approx(
        _script_reference(ref, gen), abs=1e-6
    )


def test_black_images_are_where_the_modes_differ() -> None:
    black = np.zeros((20, 20, 3), np.uint8)
    assert rewardkit.lighting_consistency(black, black, faithful=True, size=20).light_dist == 0.0
    assert rewardkit.lighting_consistency(black, black, size=20).light_dist == 1.0


def test_default_mode_uses_every_pixel_of_the_grid() -> None:
    # 512 = 3·170 + 2: a bright band in the last two rows is seen by the default grid only.
    img = np.full((512, 512, 3), 60, np.uint8)
    lit = img.copy()
    lit[510:] = 255
    assert rewardkit.lighting_consistency(img, lit, faithful=True).light_dist == 1.0
    assert rewardkit.lighting_consistency(img, lit).light_dist == 0.0


@pytest.mark.parametrize(
    ("reference", "error", "match"),
    [
        (np.zeros((8, 8), np.uint8), ValueError, r"reference must be \(H, W, 3\) RGB"),
        (np.zeros((8, 8, 3), np.float32), ValueError, "must be uint8"),
        (torch.zeros(8, 8, 3), ValueError, r"reference must be shaped \(3, H, W\)"),
        (torch.full((3, 8, 8), 2.0), ValueError, r"reference has values in \[2, 2\]; expected \[0, 1\]"),
        ("image.png", TypeError, "numpy array, torch tensor or PIL image"),
    ],
)
def test_bad_images(reference, error, match) -> None:
    with pytest.raises(error, match=match):
        rewardkit.lighting_consistency(reference, np.zeros((8, 8, 3), np.uint8), size=8)


def test_pil_mode_error() -> None:
    from PIL import Image

    with pytest.raises(ValueError, match="got PIL mode 'L'"):
        rewardkit.lighting_consistency(Image.new("L", (8, 8)), np.zeros((8, 8, 3), np.uint8), size=8)
