"""OmniRef-Bench lighting consistency: five image statistics compared between two images.

Pure array code (numpy + torch for the resize), written from the OmniRef protocol's formulas.
The colour conversions follow OpenCV's documented 8-bit definitions, so scores agree with the
reference script (which used OpenCV) up to OpenCV's fixed-point rounding of the resize and the
Lab conversion.
"""

from dataclasses import asdict, dataclass
from typing import Final

import numpy as np
import torch
from numpy.typing import NDArray

from rewardkit.evaluation._images import ImageLike, as_uint8_rgb

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


def _resize_bilinear(image: NDArray[np.uint8], size: int) -> NDArray[np.uint8]:
    """Bilinear resize to ``size × size``, rounded back to uint8.

    Half-pixel centres and no antialiasing, as OpenCV's ``INTER_LINEAR``.
    """
    if image.shape[0] == size and image.shape[1] == size:
        return image
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].double()
    out = torch.nn.functional.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def rgb_to_gray(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    r"""OpenCV's 8-bit grey: $Y = 0.299R + 0.587G + 0.114B$ in 14-bit fixed point, rounded."""
    rgb = image.astype(np.int64)
    gray = (4899 * rgb[..., 0] + 9617 * rgb[..., 1] + 1868 * rgb[..., 2] + (1 << 13)) >> 14
    return gray.astype(np.uint8)


def rgb_to_lab(image: NDArray[np.uint8]) -> NDArray[np.float64]:
    r"""CIE L\*a\*b\* (D65) on OpenCV's 8-bit scale: $L \cdot 255/100$, $a + 128$, $b + 128$.

    sRGB is linearised with the sRGB transfer curve, mapped to XYZ, normalised by the D65 white
    point, then $L = 116 f(Y) - 16$, $a = 500(f(X) - f(Y))$, $b = 200(f(Y) - f(Z))$ with
    $f(t) = t^{1/3}$ above $0.008856$ and $7.787t + 16/116$ below.
    """
    c = image.astype(np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    matrix = np.array(
        [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
    )
    xyz = linear @ matrix.T
    xyz /= np.array([0.950456, 1.0, 1.088754])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    y = xyz[..., 1]
    lightness = np.where(y > 0.008856, 116.0 * np.cbrt(y) - 16.0, 903.3 * y)
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([lightness * 255.0 / 100.0, a + 128.0, b + 128.0], axis=-1)


def _contrast(gray: NDArray[np.uint8]) -> float:
    p5, p95 = np.percentile(gray.astype(np.float64), [5, 95])
    return float((p95 - p5) / (p95 + p5 + 1e-6))


def _grid_means(gray: NDArray[np.uint8], *, faithful: bool) -> NDArray[np.float64]:
    """Mean grey level of a 3×3 grid, normalised to sum 1.

    The reference uses ``step = h // 3`` and ignores the rows/columns past ``3·step``
    (``faithful=True``); the default splits the whole image into nine near-equal cells.
    """
    g = gray.astype(np.float64)
    if faithful:
        sh, sw = g.shape[0] // 3, g.shape[1] // 3
        cells = [g[i * sh : (i + 1) * sh, j * sw : (j + 1) * sw] for i in range(3) for j in range(3)]
    else:
        cells = [cell for band in np.array_split(g, 3, axis=0) for cell in np.array_split(band, 3, axis=1)]
    means = np.array([cell.mean() for cell in cells])
    return means / means.sum() if means.sum() > 0 else means


def _light_distribution(gray1: NDArray[np.uint8], gray2: NDArray[np.uint8], *, faithful: bool) -> float:
    m1, m2 = _grid_means(gray1, faithful=faithful), _grid_means(gray2, faithful=faithful)
    flat1, flat2 = m1.std() < 1e-6, m2.std() < 1e-6
    if flat1 or flat2:  # a uniformly lit image has no light direction to correlate
        return 1.0 if flat1 and flat2 else 0.0
    r = float(np.corrcoef(m1, m2)[0, 1])
    return 0.0 if np.isnan(r) else (r + 1.0) / 2.0


def _gray_histogram(gray: NDArray[np.uint8]) -> NDArray[np.float64]:
    counts = np.bincount((gray // 4).ravel(), minlength=64).astype(np.float64)  # 64 bins over [0, 256)
    normalised: NDArray[np.float64] = counts / counts.sum()
    return normalised


def _shadow_distribution(gray1: NDArray[np.uint8], gray2: NDArray[np.uint8]) -> float:
    overlap = float(np.sum(np.sqrt(_gray_histogram(gray1) * _gray_histogram(gray2))))
    bhattacharyya = np.sqrt(max(1.0 - overlap, 0.0))
    return max(0.0, 1.0 - float(bhattacharyya))


def lighting_consistency(
    reference: ImageLike, generated: ImageLike, *, faithful: bool = False, size: int = 512
) -> LightingScore:
    r"""OmniRef-Bench lighting consistency between a lighting reference and a generated image.

    Both images are resized to ``size × size`` (bilinear, aspect ratio not kept), then with
    $L, a, b$ the Lab channels (OpenCV 8-bit scale) and $Y$ the grey image:

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
            beyond ``3·(h // 3)``, and the total is rounded as the script's 0–100 value to 2
            decimals. The default splits the grid over every pixel and does not round.
        size: side of the square both images are resized to (the protocol uses 512).

    Returns:
        A [`LightingScore`][rewardkit.LightingScore]: five sub-scores and the total, all in
        [0, 1] (the paper's Tab. 2 reports the total on this scale).

    Raises:
        ValueError: an image that is not RGB, is empty, or has values outside [0, 1] / [0, 255].

    Example:
        >>> import numpy as np, rewardkit
        >>> img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        >>> rewardkit.lighting_consistency(img, img, size=64).total
        1.0

    References:
        DyRef / OmniRef-Bench evaluation, ``CSD_patch/lighting_consistency_eval.py``; OpenCV
        colour conversions (``COLOR_RGB2Lab``, ``COLOR_RGB2GRAY``) and ``HISTCMP_BHATTACHARYYA``.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 3:
        raise ValueError(f"size must be an int >= 3 (a 3×3 grid is compared), got {size!r}")
    img1 = _resize_bilinear(as_uint8_rgb("reference", reference), size)
    img2 = _resize_bilinear(as_uint8_rgb("generated", generated), size)
    lab1, lab2 = rgb_to_lab(img1), rgb_to_lab(img2)
    gray1, gray2 = rgb_to_gray(img1), rgb_to_gray(img2)
    mean1, mean2 = lab1.reshape(-1, 3).mean(axis=0), lab2.reshape(-1, 3).mean(axis=0)

    scores = {
        "luminance": max(0.0, 1.0 - abs(mean1[0] - mean2[0]) / 50.0),
        "contrast": max(0.0, 1.0 - 2.0 * abs(_contrast(gray1) - _contrast(gray2))),
        "color_temp": max(0.0, 1.0 - float(np.hypot(*(mean1[1:] - mean2[1:]))) / 50.0),
        "light_dist": _light_distribution(gray1, gray2, faithful=faithful),
        "shadow_dist": _shadow_distribution(gray1, gray2),
    }
    scores = {k: float(v) for k, v in scores.items()}
    total = sum(LIGHTING_WEIGHTS[k] * v for k, v in scores.items())
    if faithful:  # the script reports round(100·total, 2) on a 0–100 scale
        total = round(100.0 * total, 2) / 100.0
    return LightingScore(**scores, total=float(min(max(total, 0.0), 1.0)))
