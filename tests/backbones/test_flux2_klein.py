"""FLUX.2 [klein] adapter: parity with Flux2KleinPipeline, reference position ids, sizing."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from rewardkit.backbone import rollout
from tests.backbones.conftest import rgb

NAME = "flux2-klein"
flux2 = pytest.importorskip("rewardkit_backbones.flux2_klein")


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_noise_free_sampler_reproduces_the_pipeline(
    cfg: float, load: Callable[..., Any], tiny_checkpoints: dict[str, Path]
) -> None:
    from diffusers import Flux2KleinPipeline

    # The pipeline caps reference areas at 1024² (not a module constant): use the same cap.
    bb = load(NAME, reference_area=1024 * 1024)
    refs = [rgb(64, 64, seed=1), rgb(72, 100, seed=2)]  # ragged; 100 is cropped to 96
    negative = "" if cfg > 1 else None  # the pipeline's negative prompt is always ""
    (cond,) = bb.encode_condition(
        ["make the cat blue"], [refs], height=48, width=64, negative_prompt=negative
    )
    assert cond.reference_sizes == ((64, 64), (72, 96))
    ours = rollout(
        bb, cond, group_size=1, num_steps=4, generator=torch.Generator().manual_seed(0), noise_level=0.0,
        sde_steps=[1], guidance_scale=cfg,
    ).images  # fmt: skip
    pipe = Flux2KleinPipeline.from_pretrained(tiny_checkpoints[NAME])
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(
        image=refs, prompt="make the cat blue", guidance_scale=cfg, height=48, width=64, num_inference_steps=4,
        generator=torch.Generator().manual_seed(0), output_type="pt",
        max_sequence_length=bb.options.max_sequence_length, text_encoder_out_layers=bb.options.text_encoder_out_layers,
    ).images  # fmt: skip
    assert ours is not None and ours.shape == theirs.shape == (1, 3, 48, 64)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    other = rollout(
        bb, cond, group_size=1, num_steps=4, generator=torch.Generator().manual_seed(1), guidance_scale=cfg
    )
    assert other.images is not None and float((other.images - theirs).abs().max()) > 1e-3


def test_index_ids_are_the_pipeline_ids() -> None:
    from diffusers import Flux2KleinPipeline

    refs = [(2, 3), (1, 4), (3, 1)]
    target = torch.zeros(1, 8, 2, 5)
    expected = torch.cat(
        [
            Flux2KleinPipeline._prepare_latent_ids(target)[0],
            Flux2KleinPipeline._prepare_image_ids([torch.zeros(1, 8, h, w) for h, w in refs])[0],
        ]
    )
    assert torch.equal(flux2.reference_ids((2, 5), refs, "index"), expected)


def test_position_schemes_by_hand() -> None:
    refs = [(2, 2), (1, 2)]
    offset = flux2.reference_ids((1, 1), refs, "offset")[1:]
    # ref 0 at (0, 0); ref 1 below it (a 3×2 canvas beats 2×4), all at T = 10.
    assert offset.tolist() == [
        [10, 0, 0, 0],
        [10, 0, 1, 0],
        [10, 1, 0, 0],
        [10, 1, 1, 0],
        [10, 2, 0, 0],
        [10, 2, 1, 0],
    ]
    diagonal = flux2.reference_ids((1, 1), refs, "diagonal")[1:]
    assert diagonal.tolist() == [
        [10, 1, 1, 0],
        [10, 1, 2, 0],
        [10, 2, 1, 0],
        [10, 2, 2, 0],
        [10, 3, 3, 0],
        [10, 3, 4, 0],
    ]
    with pytest.raises(ValueError, match="scheme"):
        flux2.reference_ids((1, 1), refs, "spiral")


def test_condition_carries_the_ids(load: Callable[..., Any]) -> None:
    bb = load(NAME, position_scheme="diagonal")
    (cond,) = bb.encode_condition(["ids"], [[rgb(64, 64), rgb(64, 80, seed=1)]], height=32, width=32)
    ids = cond.extras["img_ids"][0]
    assert ids.shape == (cond.image_seq_len + cond.reference_latents.shape[1], 4)
    assert cond.reference_sizes == ((64, 64), (56, 64))  # 64×80 is over the 64² cap: scaled, then cropped
    assert torch.equal(ids, flux2.reference_ids((4, 4), [(8, 8), (7, 8)], "diagonal"))
    assert cond.extras["txt_ids"].shape[1] == bb.options.max_sequence_length


def test_reference_area_cap_and_default_size(load: Callable[..., Any]) -> None:
    bb = load(NAME)  # tiny default cap 64², resolution 64
    (cond,) = bb.encode_condition(["cap"], [[rgb(64, 64), rgb(128, 128, seed=1)]])
    assert cond.reference_sizes == ((64, 64), (64, 64))  # the 128² reference is scaled down to 64²
    assert (cond.height, cond.width) == (64, 64)
    (cond,) = load(NAME, reference_area=200 * 200).encode_condition(["cap"], [[rgb(128, 128)]])
    assert cond.reference_sizes == ((128, 128),)  # smaller than the cap: never scaled up


def test_reference_checks_follow_the_pipeline(load: Callable[..., Any]) -> None:
    bb = load(NAME)
    with pytest.raises(ValueError, match="at least 64 px"):
        bb.encode_condition(["small"], [[rgb(63, 80)]])
    with pytest.raises(ValueError, match="aspect ratio"):
        bb.encode_condition(["thin"], [[rgb(64, 640)]])


def test_text_encoder_layers_are_checked(tiny_checkpoints: dict[str, Path]) -> None:
    import rewardkit

    with pytest.raises(ValueError, match="exceeds the text encoder's 2 layers"):
        rewardkit.load_backbone(
            NAME, tiny_checkpoints[NAME], device="cpu", text_encoder_out_layers=(9, 18, 27)
        )
