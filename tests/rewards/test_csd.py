import argparse
import builtins
import math

import pytest
import torch

import rewardkit
from rewardkit.rewards.csd import csd_preprocess
from rewardkit.rewards.encoders import CLIP_MEAN, CLIP_STD
from tests.rewards.helpers import smooth_image

TINY = rewardkit.CSDConfig.tiny()


def _fake_checkpoint(path, *, seed=1, config=TINY, drop=()):
    """Write a checkpoint laid out like the public CSD-ViT-L pytorch_model.bin."""
    torch.manual_seed(seed)
    model = rewardkit.CSDModel(config)
    state = {f"module.{k}": v for k, v in model.state_dict().items() if k not in drop}
    torch.save(
        {"model_state_dict": state, "args": argparse.Namespace(arch="vit_tiny", lr=0.003), "iter": 7,
         "opt_bb": {"state": {}, "param_groups": [{"lr": 0.0, "momentum": 0.9}]}},
        path,
    )  # fmt: skip
    return model


def test_model_outputs_and_parameter_names() -> None:
    model = rewardkit.CSDModel(TINY)
    names = set(model.state_dict())
    assert {"backbone.conv1.weight", "backbone.class_embedding", "backbone.positional_embedding",
            "backbone.ln_pre.weight", "backbone.ln_post.bias", "last_layer_style", "last_layer_content",
            "backbone.transformer.resblocks.0.attn.in_proj_weight",
            "backbone.transformer.resblocks.1.mlp.c_proj.weight"} <= names  # fmt: skip
    feature, content, style = model(torch.randn(2, 3, 32, 32))
    assert feature.shape == (2, 32) and content.shape == style.shape == (2, 16)
    torch.testing.assert_close(style.norm(dim=1), torch.ones(2))


def test_preprocessing_constants_match_csd() -> None:
    pre = csd_preprocess()
    assert (pre.size, pre.resize, pre.crop, pre.interpolation) == (224, "shorter", 224, "bicubic")
    assert pre.mean == CLIP_MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert pre.std == CLIP_STD == (0.26862954, 0.26130258, 0.27577711)


def test_pickled_checkpoint_loads_with_weights_only_and_converts_once(tmp_path) -> None:
    ckpt = tmp_path / "pytorch_model.bin"
    model = _fake_checkpoint(ckpt)
    state = rewardkit.load_csd_state_dict(ckpt)
    assert "last_layer_style" in state and not any(k.startswith("module.") for k in state)
    enc = rewardkit.csd_encoder(ckpt, config=TINY, device="cpu")
    images = [smooth_image(i, size=40) for i in range(2)]
    with torch.no_grad():
        want = model.eval()(csd_preprocess(TINY)(images))[2]
    torch.testing.assert_close(enc.encode(images), want)

    converted = rewardkit.convert_csd_checkpoint(ckpt)
    assert converted.suffix == ".safetensors" and converted.is_file()
    again = rewardkit.csd_encoder(converted, config=TINY, device="cpu")
    torch.testing.assert_close(again.encode(images), want)


class _Evil:
    def __reduce__(self):
        return (exec, ("import builtins; builtins._rewardkit_pwned = True",))


def test_untrusted_pickle_content_is_refused_not_executed(tmp_path) -> None:
    ckpt = tmp_path / "evil.bin"
    torch.save({"model_state_dict": {"x": torch.zeros(1)}, "payload": _Evil()}, ckpt)
    with pytest.raises(ValueError, match="weights_only=True"):
        rewardkit.load_csd_state_dict(ckpt)
    assert not hasattr(builtins, "_rewardkit_pwned")


def test_missing_or_wrong_weights_say_what_to_pass(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="tomg-group-umd/CSD-ViT-L"):
        rewardkit.csd_encoder(tmp_path / "nope.bin", config=TINY)
    with pytest.raises(ValueError, match=r"weights=.*config=CSDConfig"):
        rewardkit.csd_encoder()
    partial = tmp_path / "partial.bin"
    _fake_checkpoint(partial, drop=("last_layer_style",))
    with pytest.raises(ValueError, match="last_layer_style"):
        rewardkit.csd_encoder(partial, config=TINY)
    other = tmp_path / "other.bin"
    _fake_checkpoint(other, config=rewardkit.CSDConfig(image_size=32, patch_size=8, width=48, layers=2, heads=2,
                                                      style_dim=16, content_dim=16))  # fmt: skip
    with pytest.raises(ValueError, match="shape mismatch"):
        rewardkit.csd_encoder(other, config=TINY)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        rewardkit.CSDConfig(image_size=30, patch_size=8)


def test_csd_score_uses_the_first_style_reference_and_is_nan_without_one(tiny_csd) -> None:
    gen, other = smooth_image(0, size=40), smooth_image(7, size=40)
    reward = rewardkit.load_reward("csd_score", encoder=tiny_csd)
    ctxs = [
        rewardkit.SampleContext(
            references=(rewardkit.Reference(gen, "style"), rewardkit.Reference(other, "style"))
        ),
        rewardkit.SampleContext(
            references=(rewardkit.Reference(other, "style"), rewardkit.Reference(gen, "style"))
        ),
        rewardkit.SampleContext(references=(rewardkit.Reference(gen, "subject"),), targets=(gen,)),
    ]
    out = reward([gen, gen, gen], ctxs)
    assert float(out.scores[0]) == pytest.approx(1.0, abs=1e-5)
    assert float(out.scores[1]) < 0.9999
    assert math.isnan(float(out.scores[2]))
