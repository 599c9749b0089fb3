"""Property tests of the offline stand-in encoders with the real EfficientNet-Lite0 weights."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import rewardkit
from rewardkit.rewards import pairwise_cosine
from rewardkit.rewards.offline import efficientnet_lite0, efficientnet_lite0_weights, gram_descriptor
from tests.rewards.helpers import checker, disc, smooth_image, stripes

S = 128


@pytest.fixture(scope="module")
def perceptual():
    return rewardkit.effnet_encoder(device="cpu")


@pytest.fixture(scope="module")
def style():
    return rewardkit.gram_encoder(device="cpu")


@pytest.fixture(scope="module")
def flat():
    return rewardkit.effnet_encoder(mode="flat", device="cpu")


def sim(encoder, a, b) -> float:
    f = encoder.encode([a, b])
    return float(pairwise_cosine(f[:1], f[1:]))


def sims_to(encoder, anchor, others) -> list[float]:
    f = encoder.encode([anchor, *others])
    return pairwise_cosine(f[:1].expand(len(others), -1), f[1:]).tolist()


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = int(2 * math.ceil(3 * sigma) + 1)
    t = torch.arange(k) - k // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = (g / g.sum()).to(x.dtype)
    y = F.pad(x[None], (k // 2, k // 2, 0, 0), mode="reflect")
    y = F.conv2d(y, g.view(1, 1, 1, k).repeat(3, 1, 1, 1), groups=3)
    y = F.pad(y, (0, 0, k // 2, k // 2), mode="reflect")
    return F.conv2d(y, g.view(1, 1, k, 1).repeat(3, 1, 1, 1), groups=3)[0]


def recolour(x: torch.Tensor, a: float) -> torch.Tensor:
    mix = torch.tensor([[1 - a, a, 0.0], [0.0, 1 - a, a], [a, 0.0, 1 - a]])
    return torch.einsum("ij,jhw->ihw", mix, x).clamp(0, 1)


SCENE = smooth_image(0, size=S + 32, res=10)  # crops of it give sub-pixel-free shifts
BASE = SCENE[:, :S, :S]
UNRELATED = disc(
    stripes(S, 9, 0.7, (0.9, 0.9, 0.1), (0.1, 0.1, 0.6)),
    checker(S, 6, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    64,
    64,
    40,
)
DEGRADATIONS = {
    "blur": [blur(BASE, s) for s in (0.5, 1.0, 2.0, 4.0)],
    "shift": [SCENE[:, d : d + S, d : d + S] for d in (2, 4, 8, 16)],
    "recolour": [recolour(BASE, a) for a in (0.05, 0.1, 0.2, 0.4)],
}


def test_wheel_weights_are_loaded_into_timm() -> None:
    state = torch.load(efficientnet_lite0_weights(), map_location="cpu", weights_only=True)
    model = efficientnet_lite0()
    assert torch.equal(model.conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(model.classifier.bias, state["_fc.bias"])


@pytest.mark.parametrize("kind", ["perceptual", "style"])
def test_identical_images_score_one(kind, request) -> None:
    encoder = request.getfixturevalue(kind)
    assert sim(encoder, BASE, BASE.clone()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("kind", sorted(DEGRADATIONS))
def test_perceptual_similarity_degrades_gracefully(perceptual, kind) -> None:
    values = sims_to(perceptual, BASE, [*DEGRADATIONS[kind], UNRELATED])
    degraded, unrelated = values[:-1], values[-1]
    assert degraded[0] > 0.95, (kind, values)  # a mild perturbation keeps the image "the same"
    monotone = all(a >= b - 2e-3 for a, b in itertools.pairwise(degraded))
    assert monotone, (kind, values)
    assert min(degraded) > unrelated, (kind, values)  # still closer than a different image


def test_flat_mode_is_more_layout_sensitive_than_pooled(perceptual, flat) -> None:
    shifted = DEGRADATIONS["shift"][-1]
    assert sim(flat, BASE, shifted) < sim(perceptual, BASE, shifted)
    assert flat.encode([BASE]).shape == (1, 1280 * 7 * 7)


def _textures(seed: int):
    g = torch.Generator().manual_seed(seed)
    c = [tuple(torch.rand(3, generator=g).tolist()) for _ in range(8)]
    f1, f2 = (float(v) for v in torch.randint(6, 14, (2,), generator=g))
    ang = float(torch.rand(1, generator=g)) * math.pi
    fg_a, bg_a = stripes(S, f1, ang, c[0], c[1]), checker(S, int(f2), c[2], c[3])
    fg_b, bg_b = stripes(S, f1 / 3, ang + 1.2, c[4], c[5]), checker(S, int(f2) // 3 + 1, c[6], c[7])
    a = disc(fg_a, bg_a, 40, 40, 30)
    a_moved = disc(fg_a, bg_a, 88, 84, 30)  # same textures and palette, new layout
    b = disc(fg_b, bg_b, 40, 40, 30)  # same layout, other texture and palette
    return a, a_moved, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_style_descriptor_tracks_texture_and_palette_not_layout(style, flat, seed) -> None:
    a, a_moved, b = _textures(seed)
    layout_change, texture_change = sims_to(style, a, [a_moved, b])
    assert layout_change > 0.95
    assert layout_change > texture_change + 0.1
    assert sim(flat, a, a_moved) < layout_change  # the content encoder minds the layout more


def test_gram_descriptor_shape_and_norm() -> None:
    maps = [torch.rand(2, 4, 5, 5), torch.rand(2, 3, 2, 2)]
    d = gram_descriptor(maps)
    assert d.shape == (2, 4 * 5 // 2 + 3 * 4 // 2)
    torch.testing.assert_close(d.norm(dim=1), torch.ones(2))
    with pytest.raises(ValueError, match="B, C, H, W"):
        gram_descriptor([torch.rand(2, 3, 4)])


def test_bad_weights_and_options(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="weights="):
        rewardkit.effnet_encoder(tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"w": torch.zeros(3)}, wrong)
    with pytest.raises(ValueError, match="EfficientNet-Lite0"):
        rewardkit.effnet_encoder(wrong)
    with pytest.raises(ValueError, match="layers"):
        rewardkit.gram_encoder(layers=(7,))
    with pytest.raises(ValueError, match="mode"):
        rewardkit.effnet_encoder(mode="cls")  # type: ignore[arg-type]
