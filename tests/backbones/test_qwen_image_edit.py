"""Qwen-Image-Edit-2511 adapter: parity with QwenImageEditPlusPipeline, RoPE layouts, sizing."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import rewardkit
from rewardkit.backbone import rollout
from tests.backbones.conftest import rgb

NAME = "qwen-image-edit-2511"
qwen = pytest.importorskip("rewardkit_backbones.qwen_image_edit")


def pipeline_images(
    path: Path, bb: Any, monkeypatch: pytest.MonkeyPatch, refs: list[Any], **kwargs: Any
) -> torch.Tensor:
    """Run diffusers' own pipeline from the same checkpoint, with its reference areas set to ours."""
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus as qep
    from diffusers import QwenImageEditPlusPipeline

    monkeypatch.setattr(qep, "VAE_IMAGE_SIZE", bb.options.vae_reference_area)
    monkeypatch.setattr(qep, "CONDITION_IMAGE_SIZE", bb.options.text_reference_area)
    pipe = QwenImageEditPlusPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe(image=refs, output_type="pt", **kwargs).images


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_noise_free_sampler_reproduces_the_pipeline(
    cfg: float, load: Callable[..., Any], tiny_checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    bb = load(NAME)
    refs = [rgb(64, 64, seed=1), rgb(72, 112, seed=2)]  # ragged
    negative = " " if cfg > 1 else None
    (cond,) = bb.encode_condition(
        ["make the cat blue"], [refs], height=48, width=64, negative_prompt=negative
    )
    ours = rollout(
        bb, cond, group_size=1, num_steps=4, generator=torch.Generator().manual_seed(0), noise_level=0.0,
        sde_steps=[1, 2], guidance_scale=cfg,
    ).images  # fmt: skip
    theirs = pipeline_images(
        tiny_checkpoints[NAME], bb, monkeypatch, refs, prompt="make the cat blue", negative_prompt=negative,
        true_cfg_scale=cfg, height=48, width=64, num_inference_steps=4, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert ours is not None and ours.shape == theirs.shape == (1, 3, 48, 64)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    # The comparison can fail: another seed moves the output far beyond the tolerance.
    other = rollout(
        bb, cond, group_size=1, num_steps=4, generator=torch.Generator().manual_seed(1), guidance_scale=cfg
    )
    assert other.images is not None and float((other.images - theirs).abs().max()) > 1e-3


def test_index_positions_reproduce_the_model_rope() -> None:
    from diffusers.models.transformers.transformer_qwenimage import QwenEmbedRope

    axes = (8, 4, 4)
    native = QwenEmbedRope(theta=10000, axes_dim=list(axes), scale_rope=True)
    shapes = [(1, 3, 4), (1, 2, 5), (1, 4, 4), (1, 1, 2)]
    vid, txt = native([shapes], max_txt_seq_len=7, device=torch.device("cpu"))
    ours = qwen.positions._SchemeRope(axes, 10000, "index")
    our_vid, our_txt = ours([shapes], max_txt_seq_len=7, device=torch.device("cpu"))
    torch.testing.assert_close(our_vid, vid, rtol=0, atol=1e-6)
    torch.testing.assert_close(our_txt, txt, rtol=0, atol=1e-6)


def test_position_schemes_by_hand() -> None:
    shapes = [(1, 2, 2), (1, 2, 2), (1, 1, 2)]
    index, m_index = qwen.image_positions(shapes, "index")
    assert index[:, 0].tolist() == [0] * 4 + [1] * 4 + [2] * 2  # frame = image index
    assert index[8:].tolist() == [[2, -1, -1], [2, -1, 0]] and m_index == 1
    diagonal, m_diag = qwen.image_positions(shapes, "diagonal")
    # Target rows/cols -1..0; reference 1 from (1, 1), reference 2 from (1 + 2, 1 + 2); all frame 1.
    assert diagonal[4:].tolist() == [[1, 1, 1], [1, 1, 2], [1, 2, 1], [1, 2, 2], [1, 3, 3], [1, 3, 4]]
    assert m_diag == 5
    offset, m_offset = qwen.image_positions(shapes, "offset")
    # Canvas: ref 1 at (0, 0), ref 2 below it at (2, 0) (a 3×2 canvas beats 2×4); centred → rows
    # -2..0, cols -1..0.
    assert offset[4:].tolist() == [[1, -2, -1], [1, -2, 0], [1, -1, -1], [1, -1, 0], [1, 0, -1], [1, 0, 0]]
    assert m_offset == 1
    for positions in (diagonal, offset):
        refs = {tuple(p) for p in positions[4:, 1:].tolist()}
        assert len(refs) == 6  # the references never share a (row, col)
    with pytest.raises(ValueError, match="scheme"):
        qwen.image_positions(shapes, "spiral")


def test_auto_target_size_follows_the_last_reference(load: Callable[..., Any]) -> None:
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus import calculate_dimensions

    bb = load(NAME, resolution=64)
    (cond,) = bb.encode_condition(["wide"], [[rgb(64, 64), rgb(48, 144, seed=3)]])
    width, height = calculate_dimensions(64 * 64, 144 / 48)
    assert (cond.height, cond.width) == (height // 8 * 8, width // 8 * 8) == (32, 96)
    square = load(NAME, resolution=64, auto_resize=False)
    (cond,) = square.encode_condition(["square"], [[rgb(64, 64), rgb(48, 144, seed=3)]])
    assert (cond.height, cond.width) == (64, 64)


def test_reference_areas_are_options(load: Callable[..., Any]) -> None:
    small, large = load(NAME), load(NAME, vae_reference_area=128 * 128)
    ref = [rgb(96, 96)]
    (c_small,) = small.encode_condition(["area"], [ref], height=32, width=32)
    (c_large,) = large.encode_condition(["area"], [ref], height=32, width=32)
    assert c_small.reference_sizes == ((64, 64),) and c_large.reference_sizes == ((128, 128),)
    assert c_large.reference_latents.shape[1] == 4 * c_small.reference_latents.shape[1]


def test_too_elongated_reference_is_refused(load: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match="at least 32 px"):
        load(NAME).encode_condition(["thin"], [[rgb(16, 400)]], height=32, width=32)
    with pytest.raises(ValueError, match="pass height/width"):
        load(NAME).encode_condition(["thin"], [[rgb(16, 400)]])


def test_zero_cond_t_checkpoint_and_sequence_limit(load: Callable[..., Any]) -> None:
    bb = load(NAME, max_sequence_length=8)
    assert bb.transformer.config.zero_cond_t
    with pytest.raises(ValueError, match="max_sequence_length=8"):
        bb.encode_condition(["a prompt far longer than eight tokens"], [[rgb(64, 64)]])


def test_unsupported_scheduler_is_refused(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    copy = shutil.copytree(tiny_checkpoints[NAME], tmp_path / "ck")
    config = copy / "scheduler" / "scheduler_config.json"
    config.write_text(
        config.read_text().replace('"use_dynamic_shifting": true', '"use_dynamic_shifting": false')
    )
    with pytest.raises(ValueError, match="dynamic exponential shifting"):
        rewardkit.load_backbone(NAME, copy, device="cpu")


def test_tiny_checkpoint_with_a_trained_tokenizer(tmp_path: Path) -> None:
    """A word-level tokenizer shortens the text sequence; the text encoder's vocabulary follows it."""
    from rewardkit_backbones._tokenizer import train_bpe_tokenizer
    from rewardkit_backbones.qwen_image_edit import make_tiny_checkpoint

    import rewardkit

    prompt = "Compose the red striped circle from image 1 in front of the meadow of image 2."
    tok = train_bpe_tokenizer([prompt] * 10)
    make_tiny_checkpoint(tmp_path / "bpe", tokenizer=tok)
    rewardkit.make_tiny_checkpoint("qwen-image-edit-2511", tmp_path / "bytes")
    lengths = {}
    for name in ("bpe", "bytes"):
        backbone: Any = rewardkit.load_backbone("qwen-image-edit-2511", tmp_path / name, device="cpu")
        assert backbone.pipe.text_encoder.config.text_config.vocab_size == len(backbone.pipe.tokenizer)
        (cond,) = backbone.encode_condition([prompt], [[rgb(32, 32), rgb(32, 32, 1)]], height=32, width=32)
        lengths[name] = cond.prompt_embeds.shape[1]
    assert lengths["bpe"] < lengths["bytes"] - 50
