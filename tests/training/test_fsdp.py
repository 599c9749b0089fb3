"""training/fsdp.py: accelerate's FSDP settings, and sharding that leaves the LoRA weights whole."""

from typing import ClassVar

import pytest
import torch
from torch import nn

from rewardkit.training.fsdp import FSDPSettings, fsdp_settings_from_accelerate, shard_denoiser


def test_without_accelerate_fsdp_there_are_no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    assert fsdp_settings_from_accelerate() is None


def test_settings_are_read_through_accelerates_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    # What `accelerate launch --config_file examples/configs/accelerate_fsdp.yaml` exports.
    for key, value in {
        "ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_RESHARD_AFTER_FORWARD": "false",
        "FSDP_OFFLOAD_PARAMS": "true", "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
        "FSDP_TRANSFORMER_CLS_TO_WRAP": "Block,OtherBlock", "FSDP_ACTIVATION_CHECKPOINTING": "true",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    settings = fsdp_settings_from_accelerate()
    assert settings == FSDPSettings(
        reshard_after_forward=False,
        offload_params=True,
        wrap=("Block", "OtherBlock"),
        activation_checkpointing=True,
    )
    monkeypatch.setenv("FSDP_VERSION", "1")
    with pytest.raises(ValueError, match=r"fsdp_version 1.*set fsdp_version: 2"):
        fsdp_settings_from_accelerate()


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.base = nn.Linear(8, 8)
        self.lora = nn.Linear(8, 8, bias=False)  # stands in for a LoRA branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.base(x) + self.lora(x))


class _Denoiser(nn.Module):
    _no_split_modules: ClassVar[list[str]] = ["_Block"]

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_Block(), _Block()])
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.out(x)


@pytest.fixture
def one_process_group() -> object:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.usefixtures("one_process_group")
def test_shard_denoiser_shards_the_base_and_leaves_lora_whole() -> None:
    from torch.distributed.tensor import DTensor

    torch.manual_seed(0)
    model = _Denoiser()
    model.requires_grad_(False)
    lora = [p for b in model.blocks for p in b.lora.parameters()]
    for p in lora:
        p.requires_grad_(True)
    x = torch.randn(3, 8)
    expected = model(x)
    expected.sum().backward()
    grads = [p.grad.clone() for p in lora]
    model.zero_grad(set_to_none=True)

    assert shard_denoiser(model, FSDPSettings(), ignored=lora, device=torch.device("cpu")) == 2
    assert all(isinstance(p, DTensor) for b in model.blocks for p in b.base.parameters())
    assert all(isinstance(p, DTensor) for p in model.out.parameters())
    assert not any(isinstance(p, DTensor) for p in lora) and all(p.dtype == torch.float32 for p in lora)
    out = model(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    out.sum().backward()
    for p, g in zip(lora, grads, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0)


@pytest.mark.usefixtures("one_process_group")
def test_shard_denoiser_names_a_missing_block_class() -> None:
    with pytest.raises(ValueError, match=r"no .*Missing.* module in _Denoiser"):
        shard_denoiser(_Denoiser(), FSDPSettings(wrap=("Missing",)), ignored=[], device=torch.device("cpu"))
    plain = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="names no repeated blocks"):
        shard_denoiser(plain, FSDPSettings(), ignored=[], device=torch.device("cpu"))
