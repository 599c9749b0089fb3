"""Entry-point registry: names, errors, and the path/option checks of load_backbone."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import rewardkit
from rewardkit.backbone import BackbonePlugin, get_plugin
from tests.backbones.conftest import BACKBONES


def test_both_adapters_are_registered() -> None:
    assert set(BACKBONES) <= set(rewardkit.list_backbones())
    assert rewardkit.list_backbones() == sorted(rewardkit.list_backbones())


def test_listing_imports_no_framework() -> None:
    code = (
        "import sys, rewardkit; rewardkit.list_backbones(); "
        "print(','.join(m for m in ('diffusers', 'transformers', 'peft', 'rewardkit_backbones') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("name", BACKBONES)
def test_plugins_are_typed(name: str) -> None:
    plugin = get_plugin(name)
    assert isinstance(plugin, BackbonePlugin) and plugin.name == name and plugin.options is not None


def test_unknown_backbone_lists_the_installed_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'sd3'.*flux2-klein.*qwen-image-edit-2511"):
        rewardkit.load_backbone("sd3", ".")
    with pytest.raises(ValueError, match="installed backbones"):
        rewardkit.make_tiny_checkpoint("sd3", ".")


def test_missing_weights_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        rewardkit.load_backbone("flux2-klein", tmp_path / "no" / "such" / "dir")
    (tmp_path / "file.bin").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        rewardkit.load_backbone("flux2-klein", tmp_path / "file.bin")


@pytest.mark.parametrize("name", BACKBONES)
def test_directory_without_a_pipeline(name: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model_index\.json"):
        rewardkit.load_backbone(name, tmp_path)


@pytest.mark.parametrize("name", BACKBONES)
def test_unknown_option_lists_the_valid_ones(name: str, tiny_checkpoints: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"unknown option.*'guidance'.*valid options.*position_scheme"):
        rewardkit.load_backbone(name, tiny_checkpoints[name], guidance=4.0)
    with pytest.raises(ValueError, match="position_scheme"):
        rewardkit.load_backbone(name, tiny_checkpoints[name], position_scheme="spiral")


def test_checkpoint_of_another_backbone_is_refused(tiny_checkpoints: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="written for backbone 'qwen-image-edit-2511'"):
        rewardkit.load_backbone("flux2-klein", tiny_checkpoints["qwen-image-edit-2511"])


@pytest.mark.parametrize("name", BACKBONES)
def test_tiny_checkpoint_is_a_diffusers_pipeline(name: str, tiny_checkpoints: dict[str, Path]) -> None:
    root = tiny_checkpoints[name]
    index = json.loads((root / "model_index.json").read_text())
    assert {"transformer", "vae", "text_encoder", "tokenizer", "scheduler"} <= set(index)
    assert all((root / sub).is_dir() for sub in ("transformer", "vae", "text_encoder", "tokenizer"))
    assert json.loads((root / "rewardkit_backbone.json").read_text())["backbone"] == name


def test_tiny_checkpoint_is_deterministic(tmp_path: Path, tiny_checkpoints: dict[str, Path]) -> None:
    again = rewardkit.make_tiny_checkpoint("flux2-klein", tmp_path / "again")
    for sub in ("transformer", "vae", "text_encoder"):
        (first,) = (tiny_checkpoints["flux2-klein"] / sub).glob("*.safetensors")
        (second,) = (again / sub).glob("*.safetensors")
        assert first.read_bytes() == second.read_bytes(), sub
