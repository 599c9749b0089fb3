"""Image conversion and preprocessing in plain torch (no PIL/torchvision needed for tensors).

Every reward and encoder works on a list of ``(3, H, W)`` float32 tensors in ``[0, 1]``
(sizes may differ between images). ``as_image_list`` turns what a user passes (a batch tensor,
a list of tensors, ``uint8`` tensors or PIL images) into that form and rejects anything else
with a message that says how to fix it; ``Preprocess`` resizes, crops and normalises such a
list into a model batch.
"""

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover - typing only; PIL is imported lazily at run time
    from PIL.Image import Image as PILImage

    ImageInput: TypeAlias = Tensor | PILImage
else:
    ImageInput: TypeAlias = Any

#: A batch of images: an `(N, 3, H, W)` tensor, or a sequence of `(3, H, W)` tensors / PIL images.
Images: TypeAlias = Tensor | Sequence[ImageInput]

__all__ = ["ImageInput", "Images", "Preprocess", "as_image", "as_image_list", "is_pil_image"]

_RANGE_TOL = 1e-3  # bicubic resizes elsewhere may overshoot [0, 1] by a hair


def is_pil_image(obj: object) -> bool:
    """True if ``obj`` is a PIL image (checked without importing PIL)."""
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(obj, pil.Image)


def _pil_to_tensor(img: "PILImage") -> Tensor:
    import numpy as np

    array = np.array(img.convert("RGB"), dtype=np.uint8, copy=True)  # (H, W, 3), writable
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


def as_image(image: object, *, name: str = "image") -> Tensor:
    """Convert one image to a float32 `(3, H, W)` tensor in ``[0, 1]`` on its current device.

    Accepts a PIL image, a float tensor in ``[0, 1]`` or a ``uint8`` tensor in ``[0, 255]``,
    shaped `(3, H, W)` or `(1, H, W)` (grey, repeated to 3 channels).

    Raises:
        TypeError: not a tensor or PIL image, or an unsupported dtype.
        ValueError: wrong shape, NaN/inf values, or float values outside ``[0, 1]``.
    """
    if is_pil_image(image):
        return _pil_to_tensor(image)  # type: ignore[arg-type]
    if not isinstance(image, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor (3, H, W) in [0, 1] or a PIL image, got {type(image).__name__}"
        )
    if image.ndim != 3 or image.shape[0] not in (1, 3) or image.shape[1] < 1 or image.shape[2] < 1:
        raise ValueError(
            f"{name} must be shaped (3, H, W) (channels first; (1, H, W) for grey), got "
            f"{tuple(image.shape)}; for (H, W, 3) arrays use .permute(2, 0, 1)"
        )
    if image.dtype == torch.uint8:
        out = image.float().div(255.0)
    elif image.is_floating_point():
        out = image.float()
        if not bool(torch.isfinite(out).all()):
            raise ValueError(f"{name} contains NaN or infinite values; expected pixel values in [0, 1]")
        lo, hi = float(out.min()), float(out.max())
        if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
            raise ValueError(
                f"{name} has values in [{lo:.3g}, {hi:.3g}]; expected [0, 1]. Map [-1, 1] images "
                "with (x + 1) / 2 and [0, 255] floats with x / 255"
            )
        out = out.clamp(0.0, 1.0)
    else:
        raise TypeError(f"{name} must be a float tensor in [0, 1] or uint8, got dtype {image.dtype}")
    return out.expand(3, -1, -1) if out.shape[0] == 1 else out


def as_image_list(images: object, *, name: str = "images") -> list[Tensor]:
    """Convert a batch of images to a list of float32 `(3, H, W)` tensors in ``[0, 1]``.

    Args:
        images: an `(N, 3, H, W)` tensor (float in [0, 1] or uint8), or a sequence of images
            accepted by ``as_image``.
        name: argument name used in error messages.

    Returns:
        One tensor per image; an empty batch gives an empty list.

    Raises:
        TypeError: unsupported container or element type.
        ValueError: wrong shapes, NaN/inf, or values outside the expected range.
    """
    if isinstance(images, Tensor):
        if images.ndim != 4:
            raise ValueError(
                f"{name} as a tensor must be a batch (N, 3, H, W), got shape {tuple(images.shape)}; "
                "wrap a single (3, H, W) image as image[None]"
            )
        return [as_image(img, name=f"{name}[{i}]") for i, img in enumerate(images)]
    if is_pil_image(images) or isinstance(images, str | bytes) or not isinstance(images, Sequence):
        raise TypeError(
            f"{name} must be an (N, 3, H, W) tensor or a sequence of images, got {type(images).__name__}"
        )
    return [as_image(img, name=f"{name}[{i}]") for i, img in enumerate(images)]


Interpolation: TypeAlias = Literal["bicubic", "bilinear", "nearest"]
ResizeMode: TypeAlias = Literal["squash", "shorter"]


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or an (height, width) pair, got {value!r}")
    return (int(pair[0]), int(pair[1]))


@dataclass(frozen=True)
class Preprocess:
    r"""Resize, centre-crop and normalise images into a model batch.

    $$
    x' = \frac{\operatorname{crop}(\operatorname{resize}(x)) - \mu}{\sigma}
    $$

    ``resize="squash"`` resizes to exactly ``size`` (SigLIP; aspect ratio not kept);
    ``resize="shorter"`` scales the shorter side to ``size`` keeping the aspect ratio (CLIP,
    DINOv2, CSD), after which ``crop`` takes the central window. Resizing uses
    ``torch.nn.functional.interpolate`` with anti-aliasing and clamps back to ``[0, 1]``
    (what PIL's 8-bit resize does implicitly); values differ from PIL's resampler by about one
    grey level, which moves cosine similarities by ~1e-3.

    Attributes:
        size: target size; an int (square for ``squash``, shorter side for ``shorter``) or
            ``(height, width)`` for ``squash``.
        resize: ``"squash"`` or ``"shorter"``.
        crop: centre-crop size after resizing, or ``None``.
        mean: per-channel mean $\mu$ (RGB).
        std: per-channel std $\sigma$ (RGB).
        interpolation: ``"bicubic"``, ``"bilinear"`` or ``"nearest"``.
    """

    size: int | tuple[int, int]
    resize: ResizeMode = "shorter"
    crop: int | tuple[int, int] | None = None
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: Interpolation = "bicubic"

    def __post_init__(self) -> None:
        if self.resize not in ("squash", "shorter"):
            raise ValueError(f"resize must be 'squash' or 'shorter', got {self.resize!r}")
        if self.interpolation not in ("bicubic", "bilinear", "nearest"):
            raise ValueError(
                f"interpolation must be 'bicubic', 'bilinear' or 'nearest', got {self.interpolation!r}"
            )
        _pair(self.size, "size")
        if self.resize == "shorter" and not isinstance(self.size, int):
            raise ValueError("size must be an int (the shorter side) when resize='shorter'")
        if self.crop is not None:
            _pair(self.crop, "crop")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError(f"mean and std need 3 entries with std > 0, got {self.mean}, {self.std}")

    @property
    def output_size(self) -> tuple[int, int]:
        """`(height, width)` of every preprocessed image."""
        if self.crop is not None:
            return _pair(self.crop, "crop")
        if self.resize == "squash":
            return _pair(self.size, "size")
        raise ValueError("resize='shorter' without crop gives image-dependent sizes")

    def resize_one(self, image: Tensor) -> Tensor:
        """Resize (and crop) one `(3, H, W)` image in ``[0, 1]``; no normalisation."""
        h, w = image.shape[-2:]
        if self.resize == "squash":
            new_h, new_w = _pair(self.size, "size")
        else:
            short = int(self.size)  # type: ignore[arg-type]
            # The long side is truncated, as torchvision's Resize and HF image processors do
            # (rounding it put a 1024×768 image one pixel off and shifted the centre crop).
            long = max(short, int(short * max(h, w) / min(h, w)))
            new_h, new_w = (short, long) if h <= w else (long, short)
        out = image[None]
        if (new_h, new_w) != (h, w):
            antialias = self.interpolation != "nearest"
            kwargs: dict[str, Any] = {"antialias": antialias} if antialias else {}
            if self.interpolation != "nearest":
                kwargs["align_corners"] = False
            out = F.interpolate(out, size=(new_h, new_w), mode=self.interpolation, **kwargs)
            out = out.clamp(0.0, 1.0)  # bicubic overshoots; PIL's uint8 output clamps too
        if self.crop is not None:
            ch, cw = _pair(self.crop, "crop")
            if ch > out.shape[-2] or cw > out.shape[-1]:  # pad like torchvision's CenterCrop
                pad_h, pad_w = max(0, ch - out.shape[-2]), max(0, cw - out.shape[-1])
                out = F.pad(out, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
            top = round((out.shape[-2] - ch) / 2.0)
            left = round((out.shape[-1] - cw) / 2.0)
            out = out[..., top : top + ch, left : left + cw]
        return out[0]

    def __call__(self, images: Sequence[Tensor]) -> Tensor:
        """Preprocess a list of `(3, H, W)` images in ``[0, 1]`` into an `(N, 3, h, w)` batch."""
        if len(images) == 0:
            h, w = self.output_size
            return torch.empty(0, 3, h, w)
        resized = [self.resize_one(img.float()) for img in images]
        shapes = {tuple(r.shape) for r in resized}
        if len(shapes) != 1:
            raise ValueError(
                f"preprocessing gave images of different sizes {sorted(shapes)}; set crop= or "
                "resize='squash' so that a batch can be formed"
            )
        batch = torch.stack(resized)
        mean = torch.tensor(self.mean, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
        return (batch - mean) / std
