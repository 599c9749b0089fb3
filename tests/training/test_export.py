"""LoRA export to diffusers / peft layouts and loading any of them back (tiny FLUX.2 backbone)."""

from pathlib import Path

import pytest
import torch

import rewardkit
from rewardkit.training import export_lora, load_lora


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rewardkit.make_tiny_checkpoint("flux2-klein", tmp_path_factory.mktemp("export") / "flux")


def test_round_trip_through_every_layout(checkpoint: Path, tmp_path: Path) -> None:
    bb = rewardkit.load_backbone("flux2-klein", checkpoint, device="cpu")
    bb.add_adapter(rank=2)
    with torch.no_grad():
        for p in bb.adapter_parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    exported = export_lora(bb, tmp_path / "out")
    own = bb.save_adapter(tmp_path / "own")
    for source in (exported.diffusers_file.parent, exported.diffusers_file, exported.peft_dir, own):
        fresh = rewardkit.load_backbone("flux2-klein", checkpoint, device="cpu")
        load_lora(fresh, source)
        loaded = fresh.adapter_parameters()
        assert len(loaded) == len(bb.adapter_parameters())
        assert all(torch.equal(a, b) for a, b in zip(loaded, bb.adapter_parameters(), strict=True)), source
        assert all(p.dtype == torch.float32 and p.requires_grad for p in loaded)


def test_missing_adapter_says_what_is_expected(checkpoint: Path, tmp_path: Path) -> None:
    bb = rewardkit.load_backbone("flux2-klein", checkpoint, device="cpu")
    with pytest.raises(FileNotFoundError, match=r"adapter_config\.json"):
        load_lora(bb, tmp_path)
    with pytest.raises(ValueError, match="no LoRA adapter"):
        export_lora(bb, tmp_path / "none")
