"""Fixtures for the backbone tests: tiny checkpoints written once per session, RGB test images."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

BACKBONES = ("qwen-image-edit-2511", "flux2-klein")


def rgb(height: int, width: int, seed: int = 0):
    """A smooth random RGB PIL image (low-frequency noise, so resizing keeps its content)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.float32)
    small = Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.Resampling.BILINEAR)
    noise = rng.integers(-20, 21, size=(height, width, 3))
    return Image.fromarray(np.clip(np.asarray(small, dtype=np.int64) + noise, 0, 255).astype(np.uint8))


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny checkpoints of both backbones, written with rewardkit.make_tiny_checkpoint."""
    import rewardkit

    root = tmp_path_factory.mktemp("tiny_checkpoints")
    return {name: rewardkit.make_tiny_checkpoint(name, root / name) for name in BACKBONES}


@pytest.fixture
def load(tiny_checkpoints: dict[str, Path]) -> Callable[..., object]:
    """``load(name, **options)``: a fresh backbone from its tiny checkpoint (float32, CPU)."""
    import rewardkit

    def _load(name: str, **options: object) -> object:
        options.setdefault("device", "cpu")
        return rewardkit.load_backbone(name, tiny_checkpoints[name], **options)

    return _load


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)
