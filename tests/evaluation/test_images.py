"""rewardkit.evaluation._images: every image argument becomes (H, W, 3) uint8 RGB, or a named error."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rewardkit.evaluation._images import as_uint8_rgb, to_tensor, to_uint8


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_float_tensor_quantises_like_a_float64_reference(height: int, width: int, seed: int) -> None:
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed))
    out = as_uint8_rgb("generated", image)
    reference = np.round(image.double().permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)
    assert out.dtype == np.uint8 and out.shape == (height, width, 3) and out.flags.c_contiguous
    assert np.abs(out.astype(int) - reference.astype(int)).max() <= 1  # float32 vs float64 at .5 ties
    assert np.array_equal(as_uint8_rgb("generated", to_tensor(out)), out)  # uint8 → float → uint8
    assert np.array_equal(to_uint8(to_tensor(out)), out)


def test_uint8_tensor_array_and_pil_give_the_same_pixels() -> None:
    from PIL import Image

    array = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    for image in (array, tensor, Image.fromarray(array)):
        assert np.array_equal(as_uint8_rgb("reference", image), array)


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (torch.rand(4, 4, 3), ValueError, r"reference must be shaped \(3, H, W\)"),
        (torch.full((3, 2, 2), float("nan")), ValueError, "reference contains NaN"),
        (torch.rand(3, 2, 2) * 2 - 1, ValueError, r"reference has values in .*expected \[0, 1\]"),
        (torch.zeros(3, 2, 2, dtype=torch.int32), TypeError, "reference must be a float tensor"),
        (np.zeros((2, 2, 3), np.float32), ValueError, "reference as an array must be uint8"),
        (np.zeros((2, 2), np.uint8), ValueError, r"reference must be \(H, W, 3\) RGB"),
        (np.zeros((0, 2, 3), np.uint8), ValueError, "reference is empty"),
        ([[0, 0, 0]], TypeError, "reference must be a numpy array, torch tensor or PIL image"),
    ],
)
def test_bad_images_are_refused_naming_the_argument(image: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        as_uint8_rgb("reference", image)


def test_non_rgb_pil_image_is_refused() -> None:
    from PIL import Image

    with pytest.raises(ValueError, match=r"reference must be an RGB image, got PIL mode 'L'"):
        as_uint8_rgb("reference", Image.new("L", (4, 4)))
