"""OmniRef-Bench lighting consistency: five image statistics compared between two images.

The image operations are OpenCV's own calls, the ones the reference script made
(``cv2.resize``, ``cvtColor`` to Lab and grey, ``calcHist``/``compareHist``), so with
``faithful=True`` the score *is* the script's. The default mode differs only where the script
has a quirk (see [`lighting_consistency`][rewardkit.lighting_consistency]).
"""

from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from rewardkit.evaluation._images import ImageLike, as_uint8_rgb, opencv, rgb_to_bgr

__all__ = ["LIGHTING_WEIGHTS", "LightingScore", "lighting_consistency"]

#: Weights of the five sub-measures in the total (they sum to 1).
LIGHTING_WEIGHTS: Final[dict[str, float]] = {
    "luminance": 0.20,
    "contrast": 0.15,
    "color_temp": 0.20,
    "light_dist": 0.25,
    "shadow_dist": 0.20,
}


@dataclass(frozen=True)
class LightingScore:
    r"""Lighting sub-scores and their weighted total, each in [0, 1].

    Attributes:
        luminance: agreement of the mean Lab lightness.
        contrast: agreement of the 5–95 percentile contrast of the grey image.
        color_temp: agreement of the mean Lab chroma (a, b).
        light_dist: correlation of the 3×3 grid of mean grey levels, mapped to [0, 1].
        shadow_dist: 1 − Bhattacharyya distance of the 64-bin grey histograms.
        total: $\sum_k w_k\,\text{score}_k$ with [`LIGHTING_WEIGHTS`][rewardkit.LIGHTING_WEIGHTS].
    """

    luminance: float
    contrast: float
    color_temp: float
    light_dist: float
    shadow_dist: float
    total: float

    def as_dict(self) -> dict[str, float]:
        """The scores as a plain dict (for JSON reports)."""
        return asdict(self)


def _contrast(gray: NDArray[np.uint8]) -> float:
    p5, p95 = np.percentile(gray.astype(np.float64), [5, 95])
    return float((p95 - p5) / (p95 + p5 + 1e-6))


def _grid_means(gray: NDArray[np.uint8], *, faithful: bool) -> NDArray[np.float64]:
    """Mean grey level of a 3×3 grid, normalised to sum 1.

    The reference uses ``step = h // 3`` and ignores the rows/columns past ``3·step``, and
    divides by the sum unguarded, so an all-black image gives NaN cells (``faithful=True``).
    The default splits the whole image into nine near-equal cells and leaves a zero grid zero.
    """
    g = gray.astype(np.float64)
    if faithful:
        sh, sw = g.shape[0] // 3, g.shape[1] // 3
        cells = [g[i * sh : (i + 1) * sh, j * sw : (j + 1) * sw] for i in range(3) for j in range(3)]
    else:
        cells = [cell for band in np.array_split(g, 3, axis=0) for cell in np.array_split(band, 3, axis=1)]
    means = np.array([cell.mean() for cell in cells])
    if faithful:
        with np.errstate(invalid="ignore", divide="ignore"):
            normalised: NDArray[np.float64] = means / means.sum()
        return normalised
    return means / means.sum() if means.sum() > 0 else means


def _light_distribution(gray1: NDArray[np.uint8], gray2: NDArray[np.uint8], *, faithful: bool) -> float:
    m1, m2 = _grid_means(gray1, faithful=faithful), _grid_means(gray2, faithful=faithful)
    flat1, flat2 = bool(m1.std() < 1e-6), bool(m2.std() < 1e-6)  # NaN grids are not flat
    if flat1 or flat2:  # a uniformly lit image has no light direction to correlate
        return 1.0 if flat1 and flat2 else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        r = float(np.corrcoef(m1, m2)[0, 1])
    return 0.0 if np.isnan(r) else (r + 1.0) / 2.0


def _shadow_distribution(cv2: Any, gray1: NDArray[np.uint8], gray2: NDArray[np.uint8]) -> float:
    """1 − OpenCV's Bhattacharyya distance of the L1-normalised 64-bin grey histograms."""
    hists = [
        cv2.normalize(cv2.calcHist([g], [0], None, [64], [0, 256]), None, norm_type=cv2.NORM_L1)
        for g in (gray1, gray2)
    ]
    distance = float(cv2.compareHist(hists[0], hists[1], cv2.HISTCMP_BHATTACHARYYA))
    return 0.0 if np.isnan(distance) else max(0.0, 1.0 - distance)


def lighting_consistency(
    reference: ImageLike, generated: ImageLike, *, faithful: bool = False, size: int = 512
) -> LightingScore:
    r"""OmniRef-Bench lighting consistency between a lighting reference and a generated image.

    Both images are resized to ``size × size`` with ``cv2.resize`` (bilinear, aspect ratio not
    kept), then with $L, a, b$ the channels of ``cvtColor(BGR2LAB)`` (OpenCV's 8-bit scale) and
    $Y$ those of ``cvtColor(BGR2GRAY)``:

    $$
    \begin{aligned}
    s_{lum} &= \max\big(0,\ 1 - |\bar L_1 - \bar L_2| / 50\big) \\
    s_{con} &= \max\big(0,\ 1 - 2|c_1 - c_2|\big),\quad
        c = \tfrac{p_{95}(Y) - p_5(Y)}{p_{95}(Y) + p_5(Y) + 10^{-6}} \\
    s_{col} &= \max\big(0,\ 1 - \lVert(\bar a_1 - \bar a_2,\ \bar b_1 - \bar b_2)\rVert / 50\big) \\
    s_{dist} &= (\rho(G_1, G_2) + 1)/2,\quad G = \text{3×3 grid of mean } Y \text{, normalised to sum 1} \\
    s_{shadow} &= \max\big(0,\ 1 - \sqrt{1 - \textstyle\sum_j \sqrt{h_{1j} h_{2j}}}\big),\quad
       h = \text{64-bin } L_1\text{-normalised histogram of } Y \\
    \text{total} &= 0.20\,s_{lum} + 0.15\,s_{con} + 0.20\,s_{col} + 0.25\,s_{dist} + 0.20\,s_{shadow}
    \end{aligned}
    $$

    $\rho$ is Pearson's correlation; if either grid is flat (std < 1e-6), $s_{dist}$ is 1 when
    both are and 0 otherwise. Every term is symmetric in the two images.

    Args:
        reference: the lighting reference image, `(H, W, 3)` uint8 RGB array, or a `(3, H, W)`
            float tensor in [0, 1], or a PIL image.
        generated: the generated image, same forms.
        faithful: reproduce the reference script exactly: the 3×3 grid drops the rows/columns
            beyond ``3·(h // 3)``, an all-black image's grid is 0/0 (so its $s_{dist}$ is 0,
            even against another black image), and the total is rounded as the script's
            0–100 value to 2 decimals. The default splits the grid over every pixel, scores
            two black images' grids as equally flat (1) and does not round.
        size: side of the square both images are resized to (the protocol uses 512).

    Returns:
        A [`LightingScore`][rewardkit.LightingScore]: five sub-scores and the total, all in
        [0, 1] (the paper's Tab. 2 reports the total on this scale).

    Raises:
        ValueError: an image that is not RGB, is empty, or has values outside [0, 1] / [0, 255].
        ImportError: OpenCV is not installed (``pip install 'rewardkit[eval]'``).

    Example:
        >>> import numpy as np, rewardkit
        >>> img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        >>> rewardkit.lighting_consistency(img, img, size=64).total
        1.0

    References:
        DyRef / OmniRef-Bench evaluation, ``CSD_patch/lighting_consistency_eval.py``; OpenCV
        ``resize``, ``cvtColor`` (``COLOR_BGR2LAB``, ``COLOR_BGR2GRAY``), ``calcHist`` and
        ``compareHist(HISTCMP_BHATTACHARYYA)``.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 3:
        raise ValueError(f"size must be an int >= 3 (a 3×3 grid is compared), got {size!r}")
    cv2 = opencv()
    # The script read both files with cv2.imread (BGR) and resized them to size × size.
    bgr1 = cv2.resize(rgb_to_bgr(as_uint8_rgb("reference", reference)), (size, size))
    bgr2 = cv2.resize(rgb_to_bgr(as_uint8_rgb("generated", generated)), (size, size))
    lab1, lab2 = cv2.cvtColor(bgr1, cv2.COLOR_BGR2LAB), cv2.cvtColor(bgr2, cv2.COLOR_BGR2LAB)
    gray1, gray2 = cv2.cvtColor(bgr1, cv2.COLOR_BGR2GRAY), cv2.cvtColor(bgr2, cv2.COLOR_BGR2GRAY)
    mean1 = np.array([lab1[..., c].mean() for c in range(3)])
    mean2 = np.array([lab2[..., c].mean() for c in range(3)])

    scores = {
        "luminance": max(0.0, 1.0 - abs(mean1[0] - mean2[0]) / 50.0),
        "contrast": max(0.0, 1.0 - 2.0 * abs(_contrast(gray1) - _contrast(gray2))),
        "color_temp": max(0.0, 1.0 - float(np.sqrt(np.sum((mean1[1:] - mean2[1:]) ** 2))) / 50.0),
        "light_dist": _light_distribution(gray1, gray2, faithful=faithful),
        "shadow_dist": _shadow_distribution(cv2, gray1, gray2),
    }
    scores = {k: float(v) for k, v in scores.items()}
    total = sum(LIGHTING_WEIGHTS[k] * v for k, v in scores.items())
    if faithful:  # the script reports round(100·total, 2) on a 0–100 scale
        total = round(100.0 * total, 2) / 100.0
    return LightingScore(**scores, total=float(min(max(total, 0.0), 1.0)))
