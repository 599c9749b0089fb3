"""``offline_similarity``'s spatial encoder on real OmniRef-mini targets, through the public API.

The pooled default let RL collapse every image to one pale figure on a white field; these
properties pin down what the spatial similarity must do instead: a blurred copy of the target
beats constant images, the average scene and a patch-shuffled copy, and the score falls
monotonically with blur.
"""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter

import rewardkit
from rewardkit.data.omniref_mini import CATEGORIES, make_instance
from rewardkit.rewards.offline import SPATIAL_COLOUR_WEIGHT, spatial_descriptor
from rewardkit.rewards.registry import OFFLINE_SPATIAL_TAU

Array = NDArray[np.float32]
CATS = sorted(CATEGORIES)
BLURS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


@pytest.fixture(scope="module")
def reward64():
    return rewardkit.load_reward("offline_similarity", image_size=64, device="cpu")


@pytest.fixture(scope="module")
def reward128():
    return rewardkit.load_reward("offline_similarity", image_size=128, device="cpu")


def tensor(image: Array) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)


def target_of(category: str, n_refs: int, seed: int) -> Array:
    return make_instance(category, n_refs, np.random.default_rng(seed)).target


def blur(image: Array, sigma: float) -> Array:
    if sigma == 0:
        return image.copy()
    return gaussian_filter(image, sigma=(sigma, sigma, 0), mode="reflect").astype(np.float32)


def shuffle_patches(image: Array, patch: int, rng: np.random.Generator) -> Array:
    """Cut into ``patch``-sized tiles and permute them so that no tile stays in place."""
    n = image.shape[0] // patch
    perm = rng.permutation(n * n)
    while np.any(perm == np.arange(n * n)):
        perm = rng.permutation(n * n)
    tiles = image.reshape(n, patch, n, patch, 3).transpose(0, 2, 1, 3, 4).reshape(n * n, patch, patch, 3)
    return tiles[perm].reshape(n, n, patch, patch, 3).transpose(0, 2, 1, 3, 4).reshape(image.shape)


def constant(image: Array, colour: tuple[float, float, float] | NDArray[np.float32]) -> Array:
    return np.broadcast_to(np.asarray(colour, np.float32), image.shape).copy()


#: The average training image: 50 targets over all categories (a blob grid on a pale field).
MEAN_IMAGE: Array = np.mean(
    [
        target_of(c, CATEGORIES[c][k % len(CATEGORIES[c])], 500 + 10 * i + k)
        for i, c in enumerate(CATS)
        for k in range(5)
    ],
    axis=0,
).astype(np.float32)


def raw(reward, target: Array, images: list[Array]) -> np.ndarray:
    out = reward(torch.stack([tensor(x) for x in images]), rewardkit.SampleContext(targets=(tensor(target),)))
    sims: np.ndarray = out.extras["sim_raw"].numpy()
    return sims


def impostors(target: Array, seed: int) -> dict[str, Array]:
    rng = np.random.default_rng(seed)
    return {
        "white": constant(target, (1.0, 1.0, 1.0)),
        "black": constant(target, (0.0, 0.0, 0.0)),
        "grey": constant(target, (0.5, 0.5, 0.5)),
        "pale": constant(target, (0.93, 0.9, 0.86)),
        "image mean": constant(target, target.mean(axis=(0, 1))),
        "mean training image": MEAN_IMAGE,
        "shuffled 8x8": shuffle_patches(target, 8, rng),
        "shuffled 16x16": shuffle_patches(target, 16, rng),
    }


def check_blur_beats_impostors_and_is_monotone(reward, target: Array, seed: int) -> None:
    bad = impostors(target, seed)
    images = [blur(target, s) for s in BLURS] + [blur(target, 1.5)] + list(bad.values())
    sims = raw(reward, target, images)
    by_blur, blurred, rest = sims[: len(BLURS)], sims[len(BLURS)], sims[len(BLURS) + 1 :]
    assert by_blur[0] == pytest.approx(1.0, abs=1e-5)
    assert np.all(np.diff(by_blur) <= 1e-4), dict(zip(BLURS, by_blur.round(4), strict=True))
    for name, value in zip(bad, rest, strict=True):
        assert value < blurred - 0.05, (name, float(value), float(blurred))
    # a constant image has no structure up to the network's border effects, which hypothesis
    # found worth 0.023 on ('subject', 2, 4012): the colour term, plus a few hundredths at most
    assert np.all(np.abs(rest[:5]) <= SPATIAL_COLOUR_WEIGHT + 0.05), dict(
        zip(bad, rest.round(3), strict=True)
    )


@st.composite
def instances(draw: st.DrawFn) -> tuple[str, int, int]:
    category = draw(st.sampled_from(CATS))
    return category, draw(st.sampled_from(CATEGORIES[category])), draw(st.integers(0, 2**31 - 1))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(instance=instances())
def test_blurred_target_beats_constant_mean_and_shuffled_images(reward64, instance) -> None:
    category, n_refs, seed = instance
    check_blur_beats_impostors_and_is_monotone(reward64, target_of(category, n_refs, seed), seed)


@pytest.mark.parametrize(
    ("category", "seed"), [("subject", 0), ("subject_bg_style", 1), ("subject_pose_lighting", 2)]
)
def test_same_properties_at_the_training_resolution(reward128, category, seed) -> None:
    target = target_of(category, CATEGORIES[category][-1], seed)
    check_blur_beats_impostors_and_is_monotone(reward128, target, seed)


def test_right_composition_beats_wrong_composition_on_average(reward64) -> None:
    """Blurred or shifted copies of a target score above other targets of its category."""
    images, contexts, right = [], [], []
    for i, category in enumerate(CATS):
        n_refs = CATEGORIES[category][0]
        target = target_of(category, n_refs, i)
        others = [target_of(category, n_refs, 1000 + i), target_of(category, n_refs, 2000 + i)]
        images += [blur(target, 2.0), np.roll(target, 2, axis=1), *others]
        contexts += [rewardkit.SampleContext(targets=(tensor(target),))] * 4
        right += [True, True, False, False]
    sims = reward64(torch.stack([tensor(x) for x in images]), contexts).extras["sim_raw"].numpy()
    mask = np.array(right)
    assert sims[mask].mean() > sims[~mask].mean() + 0.3
    assert sims[mask].mean() > OFFLINE_SPATIAL_TAU > sims[~mask].mean()


def test_pooled_mode_is_still_available_and_is_fooled_by_a_constant(reward64) -> None:
    pooled = rewardkit.load_reward("offline_similarity", mode="pooled", image_size=64, device="cpu")
    assert pooled.encoder.name == "effnet-pooled" and pooled.config.tau == 0.65
    target = target_of("subject", 2, 0)
    images = [constant(target, (1.0, 1.0, 1.0)), blur(target, 4.0)]
    spatial, layout_blind = raw(reward64, target, images), raw(pooled, target, images)
    assert spatial[0] <= SPATIAL_COLOUR_WEIGHT + 0.02 < spatial[1]
    assert layout_blind[0] > 0.2  # the reason for the spatial default


# --------------------------------------------------------------------------- formula


def stage_cosines(a: list[np.ndarray], b: list[np.ndarray]) -> list[float]:
    """cos(centred a_l, centred b_l) per stage in float64; 1 where both maps are flat, 0 where one is."""
    out = []
    for x, y in zip(a, b, strict=True):
        x = x.reshape(x.shape[0], -1).astype(np.float64)
        y = y.reshape(y.shape[0], -1).astype(np.float64)
        x, y = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
        nx, ny = np.linalg.norm(x), np.linalg.norm(y)
        if nx < 1e-9 or ny < 1e-9:
            out.append(1.0 if nx < 1e-9 and ny < 1e-9 else 0.0)
        else:
            out.append(float((x * y).sum() / (nx * ny)))
    return out


def reference_similarity(
    a: list[np.ndarray],
    b: list[np.ndarray],
    colour: tuple[np.ndarray, np.ndarray] | None = None,
    alpha: float = 0.0,
) -> float:
    """(1 - α)/L sum_l c_l + α cos(P(a), P(b)) in float64 (the spatial similarity's formula)."""
    value = (1 - alpha) * float(np.mean(stage_cosines(a, b)))
    if colour is not None:
        p, q = (c.reshape(-1).astype(np.float64) for c in colour)
        value += alpha * float(p @ q / (np.linalg.norm(p) * np.linalg.norm(q)))
    return value


stage_shapes = st.lists(
    st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5)), min_size=1, max_size=3
)


@settings(max_examples=60, deadline=None)
@given(shapes=stage_shapes, data=st.data())
def test_spatial_descriptor_inner_product_is_the_mean_stage_correlation(shapes, data) -> None:
    # Half-integer values: a map is either exactly flat or clearly not (no rounding-level ties).
    values = st.integers(-6, 6).map(lambda v: v / 2)
    pairs = [data.draw(arrays(np.float32, (2, *s), elements=values)) for s in shapes]
    colour = data.draw(arrays(np.float32, (2, 3, 2, 2), elements=st.integers(1, 6).map(lambda v: v / 2)))
    alpha = data.draw(st.sampled_from([0.0, 0.25, 0.5]))
    desc = spatial_descriptor(
        [torch.from_numpy(p) for p in pairs], colour=torch.from_numpy(colour), colour_weight=alpha
    ).double()
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    expected = reference_similarity(a, b, (colour[0], colour[1]) if alpha else None, alpha)
    assert float(desc[0] @ desc[1]) == pytest.approx(expected, abs=1e-6)
    # unit norm whatever is flat: the reward's cosine is the formula itself, not a renormalised one
    assert float(desc[0].norm()) == pytest.approx(1.0, abs=1e-6)


def test_spatial_descriptor_flat_maps_and_errors() -> None:
    flat = torch.ones(2, 3, 4, 4) * torch.tensor([1.0, -2.0, 5.0])[None, :, None, None]
    structured = torch.rand(2, 3, 4, 4)
    both, one = spatial_descriptor([flat]), spatial_descriptor([structured])
    assert float(both[0] @ both[1]) == pytest.approx(1.0)  # two flat maps agree
    assert float(both[0] @ one[0]) == 0.0  # a flat map says nothing about a structured one
    with pytest.raises(ValueError, match="empty"):
        spatial_descriptor([])
    with pytest.raises(ValueError, match="B, C, H, W"):
        spatial_descriptor([torch.rand(2, 3, 4)])
    with pytest.raises(ValueError, match="colour_weight"):
        spatial_descriptor([structured], colour_weight=1.0, colour=structured)
    with pytest.raises(ValueError, match="needs a colour map"):
        spatial_descriptor([structured], colour_weight=0.5)


@pytest.mark.parametrize("towards", [0.0, 1.0], ids=["darker", "washed-out"])
def test_darker_or_washed_out_copies_score_lower_the_further_they_go(reward64, towards) -> None:
    """The colour anchor: a gain or offset of the right layout is not free (RL went dark without it)."""
    for category, seed in (("subject", 1), ("subject_bg", 2), ("subject_pose", 3)):
        target = target_of(category, CATEGORIES[category][0], seed)
        images = [(1 - t) * target + t * towards for t in (0.0, 0.2, 0.4, 0.6, 0.8)]
        sims = raw(reward64, target, [np.clip(im, 0, 1).astype(np.float32) for im in images])
        assert np.all(np.diff(sims) < 0), (category, sims.round(4))


def test_encoder_matches_a_reference_of_the_whole_pipeline(reward64) -> None:
    """Re-run the network on the same pixels: reflect-pad, stages 1-3, crop; correlate in float64."""
    encoder = reward64.encoder
    x = target_of("subject_bg", 3, 4)
    y = blur(x, 1.0)
    pixels = encoder.preprocess([tensor(x), tensor(y)])
    model = rewardkit.rewards.offline.efficientnet_lite0()
    with torch.no_grad():
        h = model.bn1(model.conv_stem(torch.nn.functional.pad(pixels, (32,) * 4, mode="reflect")))
        stages = [torch.nn.functional.adaptive_avg_pool2d(pixels, 16)]
        for index, block in enumerate(model.blocks[:4]):
            h = block(h)
            if index >= 1:
                c = 32 // (4, 8, 16)[index - 1]
                stages.append(h[..., c:-c, c:-c])
    colour = stages[0]
    expected = reference_similarity(
        [s[0].numpy() for s in stages],
        [s[1].numpy() for s in stages],
        (colour[0].numpy(), colour[1].numpy()),
        SPATIAL_COLOUR_WEIGHT,
    )
    assert raw(reward64, x, [y])[0] == pytest.approx(expected, abs=1e-4)


# --------------------------------------------------------------------------- contract


def test_shapes_dtype_determinism_and_no_gradients(reward64) -> None:
    encoder = reward64.encoder
    images = torch.stack([tensor(target_of(c, CATEGORIES[c][0], 3)) for c in CATS[:3]])
    assert not any(p.requires_grad for p in encoder.module.parameters())
    with torch.enable_grad():
        feats = encoder.encode(images)
    # pixels 16², strides 4, 8, 16 of 64 px, each with its flat marker; then the uncentred pixels
    d = (3 * 16**2 + 1) + (24 * 16**2 + 1) + (40 * 8**2 + 1) + (80 * 4**2 + 1) + (3 * 16**2 + 1)
    assert feats.shape == (3, d) and feats.dtype == torch.float32 and not feats.requires_grad
    assert torch.equal(feats, encoder.encode(images))
    one_by_one = rewardkit.effnet_encoder(mode="spatial", image_size=64, batch_size=1, device="cpu")
    torch.testing.assert_close(one_by_one.encode(images), feats, atol=1e-5, rtol=0)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(3))
    out = reward64(images, rewardkit.SampleContext(targets=(images[0],)))
    assert out.scores.shape == (3,) and out.scores.dtype == torch.float32
    assert not out.scores.requires_grad and torch.all(out.scores.abs() <= 1)
    assert float(out.scores[0]) == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(out.scores, out.extras["sim_raw"])  # DRS off: the raw similarity


def test_defaults_and_drs_on_the_raw_similarity() -> None:
    reward = rewardkit.load_reward("offline_similarity", drs=True, image_size=64, device="cpu")
    assert reward.encoder.name == "effnet-spatial" and reward.config.tau == OFFLINE_SPATIAL_TAU
    assert 0.3 < OFFLINE_SPATIAL_TAU < 0.8
    explicit = rewardkit.load_reward("offline_similarity", drs=True, tau=0.7, image_size=64, device="cpu")
    assert explicit.config.tau == 0.7
    target = target_of("subject_style", 3, 5)
    images = torch.stack([tensor(blur(target, s)) for s in (0.0, 1.0, 4.0)])
    ctx = rewardkit.SampleContext(targets=(tensor(target),), n_refs=3)
    out = reward(images, ctx)
    expected = rewardkit.drs_scale(out.extras["sim_raw"], 3, tau=OFFLINE_SPATIAL_TAU)
    torch.testing.assert_close(out.scores, expected)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"mode": "cls"}, "mode"),
        ({"mode": "spatial", "image_size": 48}, "image_size"),
        ({"layers": (7,)}, "layers"),
        ({"layers": ()}, "layers"),
        ({"layers": 2}, "layers"),
        ({"pixels": -1}, "pixels"),
        ({"pixels": True}, "pixels"),
        ({"mode": "pooled", "layers": (1, 2)}, "layers"),
        ({"mode": "flat", "pixels": 8}, "pixels"),
    ],
)
def test_bad_options_name_the_argument(options, match) -> None:
    with pytest.raises(ValueError, match=match):
        rewardkit.load_reward("offline_similarity", device="cpu", **options)


# --------------------------------------------------------------------------- offline_style


def style_context(instance) -> rewardkit.SampleContext:
    refs = tuple(rewardkit.Reference(tensor(image), kind, name) for kind, name, image in instance.references)
    return rewardkit.SampleContext(
        prompt=instance.prompt, targets=(tensor(instance.target),), references=refs
    )


def test_offline_style_applies_to_style_instances_only() -> None:
    style = rewardkit.load_reward("offline_style", image_size=64, device="cpu")
    chosen = [
        "subject",
        "subject_style",
        "subject_bg",
        "subject_pose_bg_style",
        "subject_lighting",
        "subject_pose_style",
    ]
    insts = [make_instance(c, CATEGORIES[c][0], np.random.default_rng(40 + i)) for i, c in enumerate(chosen)]
    images = torch.stack([tensor(inst.target) for inst in insts])
    out = style(images, [style_context(inst) for inst in insts])
    has_style = torch.tensor(["style" in c for c in chosen])
    assert torch.equal(torch.isnan(out.scores), ~has_style)
    assert torch.equal(torch.isnan(out.extras["sim_raw"]), ~has_style)
    assert torch.all(out.scores[has_style].abs() <= 1)
    for i in torch.nonzero(has_style).flatten().tolist():  # each against its own style reference
        alone = style(images[i : i + 1], style_context(insts[i]))
        assert float(alone.scores[0]) == pytest.approx(float(out.scores[i]), abs=1e-5)
        ref = insts[i].references[[k for k, _, _ in insts[i].references].index("style")][2]
        assert float(raw_style(style, insts[i].target, ref)) == pytest.approx(float(out.scores[i]), abs=1e-5)


def raw_style(style, image: Array, reference: Array) -> float:
    ctx = rewardkit.SampleContext(references=(rewardkit.Reference(tensor(reference), "style"),))
    return float(style(tensor(image)[None], ctx).scores[0])
