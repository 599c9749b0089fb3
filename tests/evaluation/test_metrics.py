"""Subject, background and style metrics on hand-made images with a pure-torch toy encoder."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rewardkit.evaluation import (
    EVAL_ENCODERS,
    EncoderSpec,
    background_consistency,
    crop_box,
    load_eval_encoder,
    style_consistency,
    subject_consistency,
)
from rewardkit.evaluation.metrics import CachedEncoder, pose_caption
from tests.rewards.helpers import ToyEncoder


def field(seed: int, h: int = 48, w: int = 48) -> np.ndarray:
    """A smooth random colour field, uint8 (H, W, 3)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 3, 4, 4)))
    fine = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return (fine[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


class Halves:
    """A second toy encoder: mean colour of the left and right halves (6-d)."""

    name = "halves"

    def encode(self, images):
        out = []
        for im in images:
            w = im.shape[-1]
            out.append(torch.cat([im[:, :, : w // 2].mean((1, 2)), im[:, :, w // 2 :].mean((1, 2))]) - 0.5)
        return torch.stack(out)


def cos(a: np.ndarray, b: np.ndarray, encoder) -> float:
    from rewardkit.evaluation._images import to_tensor

    fa, fb = encoder.encode([to_tensor(a), to_tensor(b)])
    return float(torch.nn.functional.cosine_similarity(fa, fb, dim=0))


# --------------------------------------------------------------------------- crops


def test_crop_box_truncates_pads_and_clamps() -> None:
    image = np.arange(100 * 80 * 3, dtype=np.int64).reshape(100, 80, 3).astype(np.uint8)
    crop = crop_box(image, (20.9, 30.2, 40.7, 50.99))  # int() → (20, 30, 40, 50), ±10 px
    np.testing.assert_array_equal(crop, image[20:61, 10:51])
    np.testing.assert_array_equal(crop_box(image, (2, 3, 75, 95)), image[0:100, 0:80])  # clamped
    assert crop_box(image, (5, 5, 6, 6), pad=0).shape == (2, 2, 3)  # inclusive ends
    assert crop_box(image, (200, 200, 210, 210)).size == 0  # outside the image


# --------------------------------------------------------------------------- subject


def test_subject_identical_crop_scores_one_and_misses_score_zero() -> None:
    generated = np.zeros((64, 64, 3), np.uint8)
    a, b = field(1, 20, 20), field(2, 20, 20)
    generated[5:25, 5:25], generated[35:55, 30:50] = a, b
    toy = ToyEncoder()
    score = subject_consistency(
        generated, [a, b, field(3)], [(5, 5, 24, 24), (30, 35, 49, 54), None], clip=toy, dino=toy, pad=0
    )
    assert score.clip[:2] == pytest.approx((1.0, 1.0), abs=1e-6) and score.clip[2] == 0.0
    assert score.dino == score.clip and score.detected == (True, True, False) and score.misses == 1
    assert score.score == pytest.approx(2 / 3, abs=1e-6)


def test_subject_score_averages_clip_and_dino_means() -> None:
    generated = field(4, 64, 64)
    refs = [field(5, 30, 30), field(6, 30, 30)]
    boxes = [(0, 0, 30, 30), (20, 20, 60, 60)]
    score = subject_consistency(generated, refs, boxes, clip=ToyEncoder(), dino=Halves())
    want_clip = [cos(crop_box(generated, b), r, ToyEncoder()) for b, r in zip(boxes, refs, strict=True)]
    want_dino = [cos(crop_box(generated, b), r, Halves()) for b, r in zip(boxes, refs, strict=True)]
    assert score.clip == pytest.approx(want_clip, abs=1e-6) and score.dino == pytest.approx(
        want_dino, abs=1e-6
    )
    assert score.score == pytest.approx((np.mean(want_clip) + np.mean(want_dino)) / 2, abs=1e-6)


def test_faithful_swaps_red_and_blue_of_the_generated_crop_only() -> None:
    subject = field(7, 30, 30)
    generated = np.zeros((40, 40, 3), np.uint8)
    generated[5:35, 5:35] = subject
    box = [(5, 5, 34, 34)]
    fixed = subject_consistency(generated, [subject], box, clip=ToyEncoder(), dino=ToyEncoder(), pad=0)
    quirk = subject_consistency(
        generated, [subject], box, clip=ToyEncoder(), dino=ToyEncoder(), pad=0, faithful=True
    )
    assert fixed.clip[0] == pytest.approx(1.0, abs=1e-6)
    assert quirk.clip[0] == pytest.approx(cos(subject[..., ::-1].copy(), subject, ToyEncoder()), abs=1e-6)
    assert quirk.clip[0] < 0.99
    grey = np.repeat(subject[..., :1], 3, axis=2)  # R == B: the swap changes nothing
    generated[5:35, 5:35] = grey
    same = subject_consistency(
        generated, [grey], box, clip=ToyEncoder(), dino=ToyEncoder(), pad=0, faithful=True
    )
    assert same.clip[0] == pytest.approx(1.0, abs=1e-6)


def test_subject_needs_one_box_per_reference() -> None:
    with pytest.raises(ValueError, match="one box per subject"):
        subject_consistency(field(0), [field(1)], [], clip=ToyEncoder(), dino=ToyEncoder())


# --------------------------------------------------------------------------- background


def test_background_masks_both_images_with_the_generated_mask() -> None:
    scene = field(8, 48, 48)
    mask = np.zeros((48, 48), bool)
    mask[10:30, 12:40] = True
    pasted = scene.copy()
    pasted[mask] = field(9, 48, 48)[mask]  # the subject covers part of the scene
    toy = ToyEncoder()
    assert background_consistency(scene, scene, mask, encoder=toy) == pytest.approx(1.0, abs=1e-6)
    assert background_consistency(pasted, scene, mask, encoder=toy) == pytest.approx(1.0, abs=1e-6)
    no_mask = np.zeros_like(mask)
    assert background_consistency(pasted, scene, no_mask, encoder=toy) < 0.999
    elsewhere = scene.copy()
    elsewhere[35:, :] = 255 - elsewhere[35:, :]  # a change outside the mask counts
    assert background_consistency(elsewhere, scene, mask, encoder=toy) < 0.99
    assert background_consistency(scene, scene, mask, encoder=toy, faithful=True) == pytest.approx(
        1.0, abs=1e-6
    )


def test_background_reference_is_resized_to_the_generated_size() -> None:
    large = field(10, 96, 128)
    small = large[::2, ::2]  # the same scene at half resolution
    score = background_consistency(small, large, np.zeros((48, 64), bool), encoder=ToyEncoder())
    assert score == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="foreground mask"):
        background_consistency(small, large, np.zeros((64, 48), bool), encoder=ToyEncoder())


# --------------------------------------------------------------------------- style


def test_style_identical_is_one_and_different_is_less() -> None:
    toy = ToyEncoder()
    assert style_consistency(field(11), field(11), encoder=toy) == pytest.approx(1.0, abs=1e-6)
    assert style_consistency(field(11), field(12), encoder=toy) < 0.99


@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_style_is_symmetric_and_bounded(a: int, b: int) -> None:
    x, y = field(a, 16, 16), field(b, 16, 16)
    s = style_consistency(x, y, encoder=Halves())
    assert s == pytest.approx(style_consistency(y, x, encoder=Halves()), abs=1e-6)
    assert -1 - 1e-6 <= s <= 1 + 1e-6


@given(st.integers(0, 10_000), st.integers(1, 30))
def test_subject_score_decreases_as_the_box_drifts_off_the_subject(seed: int, shift: int) -> None:
    subject = field(seed, 16, 16)
    generated = np.full((64, 64, 3), 128, np.uint8)
    generated[24:40, 24:40] = subject
    toy = ToyEncoder()
    on = subject_consistency(generated, [subject], [(24, 24, 39, 39)], clip=toy, dino=toy, pad=0).clip[0]
    off = subject_consistency(
        generated, [subject], [(24 + shift, 24, 39 + shift, 39)], clip=toy, dino=toy, pad=0
    ).clip[0]
    assert on == pytest.approx(1.0, abs=1e-6) and off <= on + 1e-6


# --------------------------------------------------------------------------- encoders and captions


def test_encoder_specs_parse_and_build() -> None:
    spec = EncoderSpec.parse("offline_similarity,image_size=64,device=cpu")
    assert spec == EncoderSpec("offline_similarity", None, (("image_size", 64), ("device", "cpu")))
    assert str(spec) == "offline_similarity,image_size=64,device=cpu"
    assert EncoderSpec.parse("clip=/models/clip-b16").weights == "/models/clip-b16"
    encoder = load_eval_encoder(spec)
    assert encoder.encode([torch.rand(3, 40, 40)]).shape == (1, 1280)
    toy = ToyEncoder()
    assert load_eval_encoder(toy) is toy
    with pytest.raises(ValueError, match="choose from"):
        EncoderSpec.parse("clip-large")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        EncoderSpec.parse("clip,bfloat16")
    with pytest.raises(ValueError, match="needs weights"):
        load_eval_encoder("csd")
    assert {"offline_similarity", "offline_style", "clip", "dinov2", "csd", "siglip"} <= set(EVAL_ENCODERS)


def test_real_encoder_families_load_from_configs(monkeypatch) -> None:
    """clip / dinov2 entries pass options through (a tiny random config instead of weights)."""
    from rewardkit.rewards import tiny_encoder_config

    clip = load_eval_encoder(
        EncoderSpec("clip", options=(("config", tiny_encoder_config("clip")), ("device", "cpu")))
    )
    # EVAL_ENCODERS["clip"] fills in the protocol's checkpoint only when no config is given:
    with pytest.raises(ValueError, match="either pretrained"):
        load_eval_encoder(EncoderSpec("clip", "x/y", (("config", tiny_encoder_config("clip")),)))
    dino = load_eval_encoder(
        EncoderSpec("dinov2", options=(("config", tiny_encoder_config("dinov2")), ("device", "cpu")))
    )
    assert dino.name == "dinov2-mean"  # the protocol's token mean
    assert clip.encode([torch.rand(3, 32, 32)]).shape[0] == 1


def test_cached_encoder_encodes_each_image_once() -> None:
    toy = ToyEncoder()
    cached = CachedEncoder(toy)
    a, b = torch.rand(3, 8, 8), torch.rand(3, 8, 8)
    first = cached.encode([a, b, a])
    assert toy.seen == 2
    again = cached.encode([a.clone(), b])
    assert toy.seen == 2 and torch.equal(again, first[:2])


def test_pose_captions() -> None:
    assert pose_caption("c/pose/skeleton/a_man.jpg") == "a man"
    assert pose_caption("c/pose/reference/t_-_rex_skeleton.jpg") == "t-rex"
    assert (
        pose_caption("c/pose/reference/woman_in_kimono_skeleton.jpg", faithful=True)
        == "woman in kimono skeleton"
    )


# --------------------------------------------------------------------------- faithful test vectors


def _script_background(
    gen_rgb: np.ndarray, ref_rgb: np.ndarray, sam_masks: list[np.ndarray], encoder
) -> float:
    """``background_consistency_eval.py``'s image handling with OpenCV, as the protocol spells it."""
    import cv2

    gen, ref = gen_rgb[..., ::-1].copy(), ref_rgb[..., ::-1].copy()  # cv2.imread gives BGR
    if ref.shape != gen.shape:
        ref = cv2.resize(ref, (gen.shape[1], gen.shape[0]))
    background = np.full(gen.shape[:2], 255, np.uint8)
    for m in sam_masks:
        _, binary = cv2.threshold(m, 127, 255, cv2.THRESH_BINARY)
        background = cv2.subtract(background, binary)
    pair = [cv2.bitwise_and(x, x, mask=background) for x in (gen, ref)]
    return cos(pair[0], pair[1], encoder)  # BGR arrays fed as if RGB (Image.fromarray)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    ("gen_size", "ref_size", "masks"),
    [((48, 64), (96, 128), 2), ((37, 53), (37, 53), 1), ((50, 30), (17, 91), 3), ((40, 40), (41, 40), 0)],
)
def test_faithful_background_is_the_scripts_opencv_path(seed, gen_size, ref_size, masks) -> None:
    rng = np.random.default_rng(seed)
    gen, ref = field(seed, *gen_size), field(seed + 100, *ref_size)
    sam = []
    for _ in range(masks):  # SAM-style soft masks in 0..255, thresholded at 127 by the script
        m = np.zeros(gen_size, np.uint8)
        y, x = rng.integers(0, gen_size[0] - 5), rng.integers(0, gen_size[1] - 5)
        m[y : y + rng.integers(3, 20), x : x + rng.integers(3, 20)] = rng.integers(100, 256)
        sam.append(m)
    foreground = np.zeros(gen_size, bool)
    for m in sam:
        foreground |= m > 127
    ours = background_consistency(gen, ref, foreground, encoder=ToyEncoder(), faithful=True)
    assert ours == pytest.approx(_script_background(gen, ref, sam, ToyEncoder()), abs=1e-6)


def test_faithful_subject_crop_is_the_scripts_bgr_crop() -> None:
    rng = np.random.default_rng(0)
    generated = rng.integers(0, 256, (61, 47, 3), dtype=np.uint8)
    reference = field(3, 30, 30)
    seen: list[np.ndarray] = []

    class Recorder(ToyEncoder):
        def encode(self, images):
            seen.extend(np.asarray((im.permute(1, 2, 0) * 255).round().byte()) for im in images)
            return super().encode(images)

    bgr = generated[..., ::-1]  # cv2.imread
    h, w = bgr.shape[:2]
    for box in [(3.7, 2.2, 20.9, 40.1), (-5.0, -3.0, 10.0, 10.0), (40.0, 55.0, 80.0, 90.0)]:
        seen.clear()
        subject_consistency(generated, [reference], [box], clip=Recorder(), dino=ToyEncoder(), faithful=True)
        x1, y1, x2, y2 = (int(v) for v in box)
        want = bgr[max(0, y1 - 10) : min(h - 1, y2 + 10) + 1, max(0, x1 - 10) : min(w - 1, x2 + 10) + 1]
        np.testing.assert_array_equal(seen[0], want)  # crop of the BGR array, fed unconverted
        np.testing.assert_array_equal(seen[1], reference)  # the reference stays RGB


def test_a_box_outside_the_image_is_a_miss_in_both_modes() -> None:
    generated = field(1, 40, 40)
    for faithful in (False, True):
        score = subject_consistency(
            generated,
            [field(2)],
            [(90.0, 90.0, 120.0, 120.0)],
            clip=ToyEncoder(),
            dino=ToyEncoder(),
            faithful=faithful,
        )
        assert score.detected == (False,) and score.clip == (0.0,) and score.dino == (0.0,)
