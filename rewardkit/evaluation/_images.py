"""Image argument handling shared by the evaluation metrics."""

from typing import Any, TypeAlias

import numpy as np
import torch
from numpy.typing import NDArray

#: An image as an `(H, W, 3)` uint8 RGB array, a `(3, H, W)` float tensor in [0, 1], or a PIL image.
ImageLike: TypeAlias = NDArray[Any] | torch.Tensor | Any


def as_uint8_rgb(name: str, image: ImageLike) -> NDArray[np.uint8]:
    """Convert an image argument to an `(H, W, 3)` uint8 RGB array, or raise naming ``name``."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"{name} as a tensor must be (3, H, W) RGB, got shape {tuple(image.shape)}")
        if not image.is_floating_point():
            raise ValueError(f"{name} as a tensor must be float in [0, 1], got dtype {image.dtype}")
        if bool(((image < 0) | (image > 1)).any()) or not bool(torch.isfinite(image).all()):
            raise ValueError(f"{name} as a float tensor must hold values in [0, 1]")
        array = (image.detach().float().cpu() * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
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
