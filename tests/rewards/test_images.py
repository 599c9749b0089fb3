import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

from rewardkit.rewards import Preprocess, as_image, as_image_list
from rewardkit.rewards.encoders import preprocess_from_processor_json


def test_as_image_accepts_float_uint8_grey_and_pil() -> None:
    from PIL import Image

    x = torch.rand(3, 5, 7)
    assert torch.equal(as_image(x), x)
    u8 = (x * 255).round().to(torch.uint8)
    torch.testing.assert_close(as_image(u8), u8.float() / 255)
    grey = torch.rand(1, 4, 4)
    assert as_image(grey).shape == (3, 4, 4)
    pil = Image.fromarray(u8.permute(1, 2, 0).numpy())
    torch.testing.assert_close(as_image(pil), u8.float() / 255)


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (torch.full((3, 4, 4), float("nan")), ValueError, "NaN"),
        (torch.rand(4, 4, 3), ValueError, r"\(3, H, W\)"),
        (torch.rand(3, 4, 4) * 2 - 1, ValueError, r"\(x \+ 1\) / 2"),
        (torch.randint(0, 5, (3, 4, 4)), TypeError, "dtype"),
        ("img.png", TypeError, "PIL"),
    ],
)
def test_as_image_rejects_bad_input_with_a_fix(bad, error, match) -> None:
    with pytest.raises(error, match=match):
        as_image(bad)


def test_as_image_list_batch_and_sequence() -> None:
    batch = torch.rand(2, 3, 4, 4)
    assert len(as_image_list(batch)) == 2
    assert [t.shape for t in as_image_list([torch.rand(3, 2, 2), torch.rand(3, 5, 6)])] == [
        (3, 2, 2),
        (3, 5, 6),
    ]
    assert as_image_list([]) == []
    with pytest.raises(ValueError, match=r"image\[None\]"):
        as_image_list(torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match=r"images\[1\]"):
        as_image_list([torch.rand(3, 4, 4), torch.rand(3, 4)])


@given(st.integers(8, 80), st.integers(8, 80), st.sampled_from(["bicubic", "bilinear", "nearest"]))
def test_preprocess_gives_fixed_size_and_range(h, w, interpolation) -> None:
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    squash = Preprocess(size=(16, 24), resize="squash", mean=mean, std=std, interpolation=interpolation)
    crop = Preprocess(size=20, resize="shorter", crop=16, mean=mean, std=std, interpolation=interpolation)
    image = torch.rand(3, h, w)
    for pre in (squash, crop):
        out = pre([image])
        assert out.shape == (1, 3, *pre.output_size)
        lo = (0 - torch.tensor(mean)) / torch.tensor(std)
        hi = (1 - torch.tensor(mean)) / torch.tensor(std)
        assert bool((out >= lo.view(1, 3, 1, 1) - 1e-5).all()) and bool(
            (out <= hi.view(1, 3, 1, 1) + 1e-5).all()
        )


def test_preprocess_shorter_side_keeps_aspect_and_crops_centre() -> None:
    image = torch.zeros(3, 20, 40)
    image[:, :, 18:22] = 1.0  # a bright vertical bar in the middle
    pre = Preprocess(
        size=10, resize="shorter", crop=10, mean=(0, 0, 0), std=(1, 1, 1), interpolation="nearest"
    )
    assert pre.resize_one(image).shape == (3, 10, 10)
    out = pre([image])[0, 0]
    assert float(out[:, 4:6].mean()) == 1.0 and float(out[:, :3].max()) == 0.0
    with pytest.raises(ValueError, match="different sizes"):
        Preprocess(size=10, resize="shorter")([torch.rand(3, 10, 20), torch.rand(3, 10, 30)])


def test_preprocess_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="resize"):
        Preprocess(size=8, resize="stretch")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="std"):
        Preprocess(size=8, std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="shorter side"):
        Preprocess(size=(8, 9), resize="shorter")


def test_preprocess_from_hf_processor_json() -> None:
    default = Preprocess(size=224, resize="shorter", crop=224)
    siglip = {
        "size": {"height": 384, "width": 384},
        "image_mean": [0.5] * 3,
        "image_std": [0.5] * 3,
        "resample": 2,
    }
    got = preprocess_from_processor_json(siglip, default)
    assert (got.size, got.resize, got.interpolation, got.mean) == (384, "squash", "bilinear", (0.5, 0.5, 0.5))
    clip = {
        "size": {"shortest_edge": 224},
        "crop_size": {"height": 224, "width": 224},
        "do_center_crop": True,
        "resample": 3,
    }
    got = preprocess_from_processor_json(clip, Preprocess(size=1, resize="squash"))
    assert (got.size, got.resize, got.crop, got.interpolation) == (224, "shorter", (224, 224), "bicubic")


@pytest.mark.parametrize(("h", "w"), [(1024, 768), (768, 1024), (300, 500), (224, 224), (97, 61)])
def test_shorter_side_resize_and_crop_match_torchvision(h: int, w: int) -> None:
    from torchvision.transforms import v2

    image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(h * w))
    mean, std = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)
    ours = Preprocess(size=224, resize="shorter", crop=224, mean=mean, std=std, interpolation="bicubic")(
        [image]
    )[0]
    reference = v2.Compose(
        [
            v2.Resize(224, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(224),
            v2.Normalize(mean, std),
        ]
    )(image.clamp(0, 1))
    # torchvision leaves bicubic overshoot unclamped; PIL-like clamping is ours, so compare inside.
    inside = (reference * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]).clamp(0, 1)
    reference = (inside - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
