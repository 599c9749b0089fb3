"""Image argument handling shared by the evaluation metrics."""

from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch
from numpy.typing import NDArray

from rewardkit.rewards._images import as_image

#: An image as an `(H, W, 3)` uint8 RGB array, a `(3, H, W)` tensor (float in [0, 1] or uint8),
#: or a PIL image.
ImageLike: TypeAlias = NDArray[Any] | torch.Tensor | Any


def as_uint8_rgb(name: str, image: ImageLike) -> NDArray[np.uint8]:
    """Convert an image argument to an `(H, W, 3)` uint8 RGB array, or raise naming ``name``."""
    if isinstance(image, torch.Tensor):
        # The reward encoders' tensor checks (shape, dtype, NaN, range), then 8-bit quantisation.
        tensor = as_image(image.detach(), name=name)
        array = (tensor.cpu() * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return np.ascontiguousarray(array)
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image, without importing PIL
        if image.mode != "RGB":
            raise ValueError(f"{name} must be an RGB image, got PIL mode {image.mode!r}; use .convert('RGB')")
        image = np.asarray(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy array, torch tensor or PIL image, got {type(image).__name__}"
        )
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be (H, W, 3) RGB, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {image.shape})")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} as an array must be uint8 in [0, 255], got dtype {image.dtype}")
    return image


def load_rgb(path: str | Path) -> NDArray[np.uint8]:
    """Read an image file as an `(H, W, 3)` uint8 RGB array (needs Pillow).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable image (the message names it).
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image not found: {p}")
    try:
        with Image.open(p) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{p} is not a readable image: {err}") from err


def save_png(image: NDArray[np.uint8], path: str | Path) -> Path:
    """Write an `(H, W, 3)` uint8 RGB array as PNG atomically (a temporary file, then a rename)."""
    from PIL import Image

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    Image.fromarray(as_uint8_rgb("image", image)).save(tmp, format="PNG")
    tmp.replace(target)  # an interrupted run never leaves a truncated image behind
    return target


def resize_rgb(image: NDArray[np.uint8], height: int, width: int) -> NDArray[np.uint8]:
    """Bilinear resize of an `(H, W, 3)` uint8 image (half-pixel centres, no antialiasing).

    The sampling grid of OpenCV's ``INTER_LINEAR`` (``cv2.resize``'s default), in float64 and
    rounded back to uint8.
    """
    if image.shape[0] == height and image.shape[1] == width:
        return image
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].double()
    out = torch.nn.functional.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)
    resized: NDArray[np.uint8] = out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    return resized


def to_tensor(image: NDArray[np.uint8]) -> torch.Tensor:
    """`(H, W, 3)` uint8 RGB → `(3, H, W)` float32 tensor in [0, 1] (what the encoders take)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def to_uint8(image: torch.Tensor) -> NDArray[np.uint8]:
    """`(3, H, W)` float tensor in [0, 1] → `(H, W, 3)` uint8 RGB array (rounded)."""
    array = (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0)
    out: NDArray[np.uint8] = np.ascontiguousarray(array.cpu().numpy())
    return out
