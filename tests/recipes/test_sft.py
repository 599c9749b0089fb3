"""Stage I end to end, and its exported LoRA in the diffusers pipeline and in Stage II."""

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from rewardkit.core.flow_matching import sample_timesteps
from rewardkit.recipes.config import SFTConfig, load_config
from rewardkit.recipes.sft import _instance_loss, train
from tests.recipes.conftest import sft_config, write_yaml


@pytest.mark.slow
def test_sft_lowers_the_heldout_flow_matching_loss(
    tiny: dict[str, Path], data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "sft"
    raw = sft_config(tiny, data, out, log={"plot": True})
    result = train(load_config(SFTConfig, recipe="sft", path=write_yaml(raw, tmp_path / "sft.yaml")))

    heldout = [h["heldout/loss"] for h in result.history]
    # Before training, then after each of the 2 epochs (fixed timesteps and noise per instance).
    assert len(heldout) == 3
    assert heldout[2] < heldout[1] < heldout[0], heldout
    assert heldout[0] - heldout[2] > 0.02, heldout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train/loss" in r][-1] == 8  # 8 instances / batch 2 × 2 epochs
    assert (out / "loss_curve.png").is_file() and (
        out / "adapter" / "pytorch_lora_weights.safetensors"
    ).is_file()


@pytest.mark.slow
def test_exported_lora_loads_into_the_diffusers_pipeline(
    tiny: dict[str, Path], data: dict[str, Path], tmp_path: Path
) -> None:
    from diffusers import Flux2KleinPipeline
    from PIL import Image

    raw = sft_config(tiny, data, tmp_path / "sft", backbone="flux2-klein", data={"eval": None, "limit": 4},
                     optim={"lr": 5e-2}, train={"epochs": 1})  # fmt: skip
    result = train(load_config(SFTConfig, recipe="sft", path=write_yaml(raw, tmp_path / "sft.yaml")))
    assert result.export is not None

    pipe = Flux2KleinPipeline.from_pretrained(str(tiny["flux2-klein"]))
    reference = Image.new("RGB", (64, 64), (200, 40, 40))

    def generate() -> torch.Tensor:
        out = pipe(image=[reference], prompt="a red square", height=32, width=32, num_inference_steps=2,
                   guidance_scale=1.0, generator=torch.Generator().manual_seed(0), output_type="pt",
                   max_sequence_length=96, text_encoder_out_layers=(1, 2))  # fmt: skip
        return out.images

    before = generate()
    pipe.load_lora_weights(str(result.export.diffusers_file.parent))
    lora = [n for n, _ in pipe.transformer.named_parameters() if "lora_" in n]
    assert len(lora) == 2 * 9  # A and B of every default FLUX.2 target module of the tiny model
    after = generate()
    assert before.shape == after.shape == (1, 3, 32, 32)
    assert (after - before).abs().max() > 1e-3

    # The peft folder loads with peft, with the same weights as the diffusers file.
    from peft import PeftModel
    from safetensors.torch import load_file

    fresh = Flux2KleinPipeline.from_pretrained(str(tiny["flux2-klein"]))
    model = PeftModel.from_pretrained(fresh.transformer, str(result.export.peft_dir))
    state = dict(model.named_parameters())
    exported = load_file(str(result.export.diffusers_file))
    for key, value in exported.items():
        name = "base_model.model." + key.removeprefix("transformer.").replace(".weight", ".default.weight")
        assert torch.equal(state[name].detach(), value), key


@pytest.mark.slow
def test_interrupted_sft_resumes_mid_epoch_to_the_same_weights(
    tiny: dict[str, Path], data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    from rewardkit.recipes import _common as rc
    from rewardkit.training import latest_checkpoint

    def run(name: str, resume: str | None = None) -> None:
        raw = sft_config(tiny, data, tmp_path / name, data={"eval": None}, log={"save_every": 1})
        config = load_config(SFTConfig, recipe="sft", path=write_yaml(raw, tmp_path / f"{name}.yaml"))
        train(config, resume=resume)

    run("straight")
    real_step, calls = rc.clip_and_step, []

    def crash_on_the_sixth_step(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 6:  # inside epoch 2 (4 steps per epoch), after checkpoint step_5
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(rc, "clip_and_step", crash_on_the_sixth_step)
    with pytest.raises(KeyboardInterrupt):
        run("interrupted")
    monkeypatch.setattr(rc, "clip_and_step", real_step)
    assert latest_checkpoint(tmp_path / "interrupted" / "checkpoints").name == "step_5"
    run("interrupted", resume="latest")

    a, b = (load_file(str(latest_checkpoint(tmp_path / n / "checkpoints") / "tensors.safetensors"))
            for n in ("straight", "interrupted"))  # fmt: skip
    assert latest_checkpoint(tmp_path / "interrupted" / "checkpoints").name == "step_8"
    for key in a:
        if key.startswith(("adapter/", "optimizer/")):
            assert torch.equal(a[key], b[key]), key


class _AffineBackbone:
    """v = 2·x + σ, batched over per-sample σ; records the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def velocity(self, latents: torch.Tensor, sigma: Any, condition: Any) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=latents.dtype).expand(latents.shape[0])
        self.calls.append((latents, s))
        return 2 * latents + s[:, None, None]


class _OneInstance:
    def __init__(self, x0: torch.Tensor) -> None:
        self.backbone, self.x0 = _AffineBackbone(), x0

    def condition(self, position: int) -> None:
        return None

    def target_latents(self, position: int) -> torch.Tensor:
        return self.x0


@pytest.mark.parametrize("num", [1, 3, 8])
def test_instance_loss_batches_its_timesteps_and_matches_a_float64_reference(num: int) -> None:
    x0 = torch.randn(1, 5, 4, generator=torch.Generator().manual_seed(3))
    split = _OneInstance(x0)
    config = SFTConfig()
    config.train.num_train_timesteps = 50
    sigmas = torch.linspace(1.0, 0.02, 50, dtype=torch.float64)
    weights = torch.linspace(0.5, 1.5, 50, dtype=torch.float64)
    loss = _instance_loss(split, 0, config, torch.Generator().manual_seed(9), sigmas, weights, num)  # type: ignore[arg-type]

    assert len(split.backbone.calls) == 1  # one forward for all the instance's timesteps
    ((latents, sigma),) = split.backbone.calls
    assert latents.shape == (num, 5, 4) and sigma.shape == (num,)
    # Reference: the same draws (indices first, then noise), per sample, in float64.
    gen = torch.Generator().manual_seed(9)
    index = sample_timesteps(num, 50, generator=gen)
    noise = torch.randn((num, 5, 4), generator=gen).double()
    total = torch.zeros((), dtype=torch.float64)
    for b, j in enumerate(index.tolist()):
        s = sigmas[j]
        x = (1 - s) * x0[0].double() + s * noise[b]
        v = 2 * x + s
        total += weights[j] * (v - (noise[b] - x0[0].double())).pow(2).mean()
    torch.testing.assert_close(loss.double(), total / num, rtol=1e-5, atol=1e-6)
