import base64
import io

import pytest
import torch

from rewardkit.rewards.judges._common import check_on_error, image_data_url


def _decode(url: str):
    from PIL import Image

    assert url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_image_data_url_shrinks_to_max_side_and_is_deterministic() -> None:
    image = torch.rand(3, 300, 700)
    url = image_data_url(image, max_side=512)
    decoded = _decode(url)
    assert decoded.format == "JPEG" and max(decoded.size) == 512 and decoded.size[0] > decoded.size[1]
    assert image_data_url(image.clone(), max_side=512) == url  # same pixels, same request, same cache key
    small = _decode(image_data_url(torch.rand(3, 20, 30)))
    assert small.size == (30, 20)  # never upscaled


def test_on_error_policy_is_checked() -> None:
    check_on_error("nan")
    with pytest.raises(ValueError, match="'nan'"):
        check_on_error("ignore")
