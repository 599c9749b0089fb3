"""The backbones' planner hooks: shipped real configs give the published parameter counts."""

import functools
import json
from importlib import resources

import pytest
import torch

from rewardkit.backbone.registry import get_plugin
from rewardkit.planning.model import PlanModel, PlanShape

pytest.importorskip("diffusers")

# Published / checkpoint-verified counts (docs/planning.md).
EXPECTED = {
    ("qwen-image-edit-2511", "2511"): (20_430_401_088, 8_292_166_656, 126_892_531),
    ("flux2-klein", "klein-4b"): (3_875_544_576, 4_022_468_096, 84_046_115),
    ("flux2-klein", "klein-9b"): (9_078_581_248, 8_190_735_360, 84_046_115),
}


@functools.cache
def _plan(name: str, variant: str) -> PlanModel:
    return get_plugin(name).plan(variant)


@pytest.mark.parametrize(("name", "variant"), list(EXPECTED))
def test_real_config_parameter_counts(name: str, variant: str) -> None:
    model = _plan(name, variant)
    assert isinstance(model, PlanModel)
    assert next(model.transformer.parameters()).device.type == "meta"
    assert (model.transformer_params, model.text_encoder_params, model.vae_params) == EXPECTED[name, variant]
    assert model.multiple_of == 16
    blocks = model.blocks()
    assert blocks and {type(b).__name__ for b in blocks} <= set(model.block_classes)


@pytest.mark.parametrize(
    ("name", "refs", "tokens"), [("qwen-image-edit-2511", 2, 64 * 3), ("flux2-klein", 2, 64 * 3)]
)
def test_forward_kwargs_token_counts(name: str, refs: int, tokens: int) -> None:
    """Target + references as the adapter concatenates them: (H/16)(W/16) tokens per image."""
    model = _plan(name, "klein-4b" if name == "flux2-klein" else "2511")
    kwargs = model.forward_kwargs(PlanShape(2, 128, 128, refs, 128, 7), torch.device("meta"), torch.bfloat16)
    assert kwargs["hidden_states"].shape[:2] == (2, tokens)
    assert kwargs["encoder_hidden_states"].shape[:2] == (2, 7)
    out = model.transformer(**kwargs)[0]
    assert out.shape[:2] == (2, tokens)


def test_shipped_configs_are_package_data() -> None:
    files = [
        resources.files("rewardkit_backbones.qwen_image_edit").joinpath("configs", f"{c}.json")
        for c in ("transformer", "text_encoder", "vae")
    ] + [
        resources.files("rewardkit_backbones.flux2_klein").joinpath("configs", v, f"{c}.json")
        for v in ("klein-4b", "klein-9b")
        for c in ("transformer", "text_encoder", "vae")
    ]
    for f in files:
        assert isinstance(json.loads(f.read_text()), dict)


@pytest.mark.parametrize("name", ["qwen-image-edit-2511", "flux2-klein"])
def test_unknown_variant_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="variant"):
        get_plugin(name).plan("no-such-variant")
