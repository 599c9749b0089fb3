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


def load_rgb(path: str | Path, *, opencv_decoder: bool = False) -> NDArray[np.uint8]:
    """Read an image file as an `(H, W, 3)` uint8 RGB array.

    Args:
        path: the image file.
        opencv_decoder: decode with ``cv2.imread`` (as the reference scripts read generated
            images and the lighting and background references) instead of Pillow. The two
            agree on PNG; JPEG decoders may differ by a level.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable image (the message names it).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image not found: {p}")
    if opencv_decoder:
        cv2 = opencv()
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{p} is not a readable image (cv2.imread returned None)")
        return rgb_to_bgr(bgr)  # the same swap turns BGR back into RGB
    from PIL import Image, UnidentifiedImageError

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


def opencv() -> Any:
    """The ``cv2`` module, or an ImportError that says which extra installs it.

    The faithful metrics call OpenCV where the reference scripts did, so their numbers are the
    scripts' own, not a re-implementation's.
    """
    try:
        import cv2
    except ImportError as err:
        raise ImportError(
            "the OmniRef lighting and background metrics need OpenCV: pip install 'rewardkit[eval]' "
            "(opencv-python-headless)"
        ) from err
    return cv2


def resize_rgb(image: NDArray[np.uint8], height: int, width: int) -> NDArray[np.uint8]:
    """``cv2.resize`` to ``height × width`` with its default ``INTER_LINEAR``, as the scripts did."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    resized: NDArray[np.uint8] = opencv().resize(np.ascontiguousarray(image), (width, height))
    return resized


def rgb_to_bgr(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Swap red and blue: what ``cv2.imread`` returns for the same file."""
    return np.ascontiguousarray(image[..., ::-1])


def to_tensor(image: NDArray[np.uint8]) -> torch.Tensor:
    """`(H, W, 3)` uint8 RGB → `(3, H, W)` float32 tensor in [0, 1] (what the encoders take)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def to_uint8(image: torch.Tensor) -> NDArray[np.uint8]:
    """`(3, H, W)` float tensor in [0, 1] → `(H, W, 3)` uint8 RGB array (rounded)."""
    array = (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0)
    out: NDArray[np.uint8] = np.ascontiguousarray(array.cpu().numpy())
    return out
