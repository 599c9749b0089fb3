import json

import pytest
import torch

import rewardkit
from rewardkit.rewards import tiny_encoder_config
from rewardkit.rewards.encoders import resolve_dtype
from tests.rewards.helpers import smooth_image

IMAGES = [smooth_image(i, size=40) for i in range(3)]


@pytest.mark.parametrize(("mode", "dim"), [("flat", 16 * 32), ("mean_pool", 32), ("pooler", 32)])
def test_siglip_modes_have_the_documented_shapes(mode, dim) -> None:
    enc = rewardkit.siglip_encoder(config=tiny_encoder_config("siglip"), mode=mode, device="cpu")
    feats = enc.encode(IMAGES)
    assert feats.shape == (3, dim) and feats.dtype == torch.float32
    assert enc.name == f"siglip-{mode}"


def test_siglip_flat_is_the_flattened_last_hidden_state(tiny_siglip) -> None:
    pixels = tiny_siglip.preprocess(IMAGES)
    with torch.no_grad():
        hidden = tiny_siglip.module(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(tiny_siglip.encode(IMAGES), hidden.flatten(1))


def test_siglip2_naflex_uses_a_fixed_patch_grid() -> None:
    enc = rewardkit.siglip_encoder(config=tiny_encoder_config("siglip2"), mode="flat", device="cpu")
    assert enc.preprocess.output_size == (32, 32)  # sqrt(16 patches) * patch 8
    feats = enc.encode(IMAGES)
    assert feats.shape == (3, 16 * 32)
    torch.testing.assert_close(enc.encode(IMAGES[:1]), feats[:1], atol=1e-5, rtol=1e-5)


def test_clip_and_dinov2_features() -> None:
    clip = rewardkit.clip_encoder(config=tiny_encoder_config("clip"), device="cpu")
    assert clip.encode(IMAGES).shape == (3, 16)  # projection_dim
    assert clip.preprocess.crop == 32 and clip.preprocess.mean == rewardkit.rewards.encoders.CLIP_MEAN
    pooled = rewardkit.clip_encoder(config=tiny_encoder_config("clip"), projected=False, device="cpu")
    assert pooled.encode(IMAGES).shape == (3, 32)
    cls = rewardkit.dinov2_encoder(config=tiny_encoder_config("dinov2"), device="cpu").encode(IMAGES)
    mean = rewardkit.dinov2_encoder(
        config=tiny_encoder_config("dinov2"), pooling="mean", device="cpu"
    ).encode(IMAGES)
    assert cls.shape == mean.shape == (3, 32)
    assert not torch.allclose(cls, mean)


def test_open_clip_model_can_be_wrapped() -> None:
    open_clip = pytest.importorskip("open_clip")  # part of the rewards extra
    model = open_clip.CLIP(
        embed_dim=16,
        vision_cfg={"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
        text_cfg={"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
    )
    enc = rewardkit.open_clip_encoder(model=model, device="cpu")
    assert enc.encode(IMAGES).shape == (3, 16)
    with pytest.raises(ValueError, match="pretrained="):
        rewardkit.open_clip_encoder("ViT-B-32")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        rewardkit.open_clip_encoder("ViT-B-32", pretrained="/nonexistent/open_clip.bin")


def test_batch_size_does_not_change_features() -> None:
    one = rewardkit.siglip_encoder(config=tiny_encoder_config("siglip"), batch_size=1, device="cpu")
    three = rewardkit.siglip_encoder(config=tiny_encoder_config("siglip"), batch_size=3, device="cpu")
    torch.testing.assert_close(one.encode(IMAGES), three.encode(IMAGES), atol=1e-5, rtol=1e-5)


def test_random_weights_are_seeded_and_leave_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a = rewardkit.siglip_encoder(config=tiny_encoder_config("siglip"), device="cpu", seed=3).encode(
        IMAGES[:1]
    )
    assert torch.equal(torch.random.get_rng_state(), state)
    b = rewardkit.siglip_encoder(config=tiny_encoder_config("siglip"), device="cpu", seed=3).encode(
        IMAGES[:1]
    )
    c = rewardkit.siglip_encoder(config=tiny_encoder_config("siglip"), device="cpu", seed=4).encode(
        IMAGES[:1]
    )
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bfloat16_runs_and_returns_float32() -> None:
    enc = rewardkit.siglip_encoder(config=tiny_encoder_config("siglip"), dtype="bfloat16", device="cpu")
    feats = enc.encode(IMAGES)
    assert enc.dtype == torch.bfloat16 and feats.dtype == torch.float32 and bool(torch.isfinite(feats).all())
    assert resolve_dtype(None) == torch.float32
    with pytest.raises(ValueError, match="bfloat16"):
        resolve_dtype("half-ish")


def test_local_directory_round_trip_and_processor_config(tmp_path, tiny_siglip) -> None:
    tiny_siglip.module.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "size": {"height": 32, "width": 32},
                "image_mean": [0.4, 0.4, 0.4],
                "image_std": [0.3, 0.3, 0.3],
                "resample": 2,
            }
        )
    )
    loaded = rewardkit.siglip_encoder(str(tmp_path), device="cpu")
    assert loaded.preprocess.mean == (0.4, 0.4, 0.4) and loaded.preprocess.interpolation == "bilinear"
    loaded.preprocess = tiny_siglip.preprocess  # same weights + same preprocessing -> same features
    torch.testing.assert_close(loaded.encode(IMAGES), tiny_siglip.encode(IMAGES))


def test_missing_weights_path_says_what_to_pass() -> None:
    with pytest.raises(FileNotFoundError, match=r"pretrained= a local directory.*config="):
        rewardkit.siglip_encoder("/nonexistent/siglip2-base-patch16-384")
    with pytest.raises(FileNotFoundError, match="DINOv2"):
        rewardkit.dinov2_encoder("./no/such/dinov2")
    with pytest.raises(ValueError, match="not both"):
        rewardkit.clip_encoder("openai/clip-vit-base-patch16", config=tiny_encoder_config("clip"))


def test_unreachable_hub_id_explains_the_local_alternative(tmp_path) -> None:
    # A hub id that does not exist: fails fast offline and online alike, never downloads weights.
    with pytest.raises(OSError, match="local directory"):
        rewardkit.clip_encoder("rewardkit-tests/no-such-model-7f3a")


def test_empty_batch_and_bad_batch_size(tiny_siglip) -> None:
    assert tiny_siglip.encode([]).shape[0] == 0
    with pytest.raises(ValueError, match="batch_size"):
        rewardkit.siglip_encoder(config=tiny_encoder_config("siglip"), batch_size=0)
    with pytest.raises(ValueError, match="mode"):
        rewardkit.siglip_encoder(config=tiny_encoder_config("siglip"), mode="cls")  # type: ignore[arg-type]


def test_encoders_satisfy_the_protocol(tiny_siglip) -> None:
    assert isinstance(tiny_siglip, rewardkit.ImageEncoder)


def test_full_model_checkpoints_load_their_vision_tower(tmp_path) -> None:
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "vocab_size": 99, "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}  # fmt: skip
    pixels = torch.rand(2, 3, 32, 32)
    siglip = SiglipModel(SiglipConfig(text_config=text, vision_config=tiny_encoder_config("siglip"))).eval()
    siglip.save_pretrained(tmp_path / "siglip")
    enc = rewardkit.siglip_encoder(str(tmp_path / "siglip"), mode="pooler", device="cpu")
    with torch.no_grad():
        want = siglip.vision_model(pixel_values=(pixels - 0.5) / 0.5).pooler_output
    torch.testing.assert_close(enc.encode(pixels), want, atol=1e-5, rtol=1e-5)

    vision = tiny_encoder_config("clip")
    clip = CLIPModel(
        CLIPConfig(text_config=text, vision_config=vision, projection_dim=vision.pop("projection_dim"))
    ).eval()
    clip.save_pretrained(tmp_path / "clip")
    enc = rewardkit.clip_encoder(str(tmp_path / "clip"), device="cpu")
    with torch.no_grad():
        out = clip.get_image_features(pixel_values=enc.preprocess(list(pixels)))
    want = out if isinstance(out, torch.Tensor) else out.pooler_output
    torch.testing.assert_close(enc.encode(pixels), want, atol=1e-5, rtol=1e-5)
