"""Shared fixtures of the evaluation tests: a tiny OmniRef-mini split and fast offline encoders."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from rewardkit.evaluation import EncoderSpec, load_benchmark

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub from the tests

#: Offline stand-ins at 64 px (the images are 64 px; 224 px only costs time on CPU).
FAST_SIMILARITY = EncoderSpec("offline_similarity", options=(("image_size", 64), ("device", "cpu")))
FAST_STYLE = EncoderSpec("offline_style", options=(("image_size", 64), ("device", "cpu")))


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: small convolutions on 2 shared cores are much faster without
    OpenMP threads spinning against each other. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fast() -> dict:
    """Evaluation options with the offline stand-ins built once for the session (64 px, CPU)."""
    from rewardkit.evaluation import load_eval_encoder

    similarity, style = load_eval_encoder(FAST_SIMILARITY), load_eval_encoder(FAST_STYLE)
    return {"clip": similarity, "dino": similarity, "style": style, "progress": False}


@pytest.fixture(scope="session")
def mini(tmp_path_factory) -> Path:
    """A 12-instance OmniRef-mini test split (64 px) covering all five reference types."""
    from rewardkit.data import write_omniref_mini

    root = tmp_path_factory.mktemp("omniref_mini")
    metadata = write_omniref_mini(root, n_train=0, n_test=12, seed=0, size=64)["test"]
    types = set().union(*(inst.types for inst in load_benchmark(metadata)))
    assert types == {"subject", "background", "style", "lighting", "pose"}
    return metadata


@pytest.fixture(scope="session")
def gt_folder(mini: Path, tmp_path_factory) -> Path:
    """The ground-truth targets copied as if they were generated images, plus stray files."""
    folder = tmp_path_factory.mktemp("gt_as_generated")
    bench = load_benchmark(mini)
    for inst in bench:
        shutil.copy(bench.resolve(inst.target), folder / f"{inst.index}.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "7_old.png").write_bytes(b"not even a png")
    return folder
