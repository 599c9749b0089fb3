"""Fixtures for the recipe tests: tiny checkpoints, a tiny OmniRef-mini split, config builders.

Every run is CPU-sized: 32×32 targets, references at 32×32 tokens, rank-4 LoRA, 4 sampling steps,
groups of 4. The GRPO runs use the ``redness`` test reward (``tests.recipes.toy_rewards``), which
the tiny Qwen-Image-Edit checkpoint can raise within a few epochs.
"""

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

# Importing toy_rewards registers a test reward; keep --doctest-modules from importing it at
# collection time (the reward registry's contract tests enumerate every registered reward).
collect_ignore = ["toy_rewards.py"]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """In-process runs use one thread, like the subprocess runs: tiny tensors gain nothing from
    more, and a shared 2-core machine is not oversubscribed. Module-scoped so that it also covers
    module-scoped fixtures that train."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="module")
def restore_reward_registry() -> Iterator[None]:
    """Runs import ``tests.recipes.toy_rewards`` (``extra_imports``), which registers ``redness``;
    take it out again so that the registry contract tests of other modules see only real rewards."""
    from rewardkit.rewards import REWARDS

    saved = dict(REWARDS)
    yield
    REWARDS.clear()
    REWARDS.update(saved)
    sys.modules.pop("tests.recipes.toy_rewards", None)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny checkpoints of both backbones."""
    import rewardkit

    root = tmp_path_factory.mktemp("recipe_tiny")
    return {
        name: rewardkit.make_tiny_checkpoint(name, root / name)
        for name in ("qwen-image-edit-2511", "flux2-klein")
    }


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """OmniRef-mini train (8 instances) and test (4 instances) splits at 64 px."""
    from rewardkit.data.omniref_mini import write_omniref_mini

    return write_omniref_mini(tmp_path_factory.mktemp("recipe_data"), n_train=8, n_test=4, seed=0, size=64)


def grpo_config(tiny: dict[str, Path], splits: dict[str, Path], out: Path, **sections: Any) -> dict[str, Any]:
    """A CPU-sized GRPO config (nested dict) on the tiny Qwen checkpoint; ``sections`` update it."""
    config: dict[str, Any] = {
        "model": {
            "backbone": "qwen-image-edit-2511",
            "path": str(tiny["qwen-image-edit-2511"]),
            "options": {"vae_reference_area": 1024, "device": "cpu"},
            "lora_rank": 4,
        },
        "data": {"train": str(splits["train"]), "height": 32, "width": 32, "cache": True},
        "optim": {"lr": 5e-2},
        "train": {"epochs": 1, "prompts_per_epoch": 2, "group_size": 4, "gradient_step_per_epoch": 2,
                  "per_device_batch_size": 4, "seed": 42},
        "rollout": {"num_steps": 4, "train_steps": [0, 1, 2], "num_train_steps": 3},
        "rewards": [{"reward": "redness", "name": "redness"}],
        "dar": {"reward": "redness", "w_min": 0.0},
        "advantage": {"clip_range": 0.5},
        "kl": {"beta": 0.0},
        "ema": {"update_interval": 1},
        "eval": {"every": 0},
        "log": {"output_dir": str(out), "progress": False, "plot": False, "tensorboard": False},
        "extra_imports": ["tests.recipes.toy_rewards"],
    }  # fmt: skip
    for key, value in sections.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    return config


def sft_config(tiny: dict[str, Path], splits: dict[str, Path], out: Path, backbone: str = "qwen-image-edit-2511",
               **sections: Any) -> dict[str, Any]:  # fmt: skip
    """A CPU-sized SFT config (nested dict); ``sections`` update it."""
    area = {"qwen-image-edit-2511": "vae_reference_area", "flux2-klein": "reference_area"}[backbone]
    config: dict[str, Any] = {
        "model": {"backbone": backbone, "path": str(tiny[backbone]), "options": {area: 1024, "device": "cpu"},
                  "lora_rank": 4},
        "data": {"train": str(splits["train"]), "eval": str(splits["test"]), "height": 32, "width": 32, "cache": True},
        "optim": {"lr": 1e-2},
        "train": {"epochs": 2, "batch_size": 2, "eval_timesteps": 2},
        "log": {"output_dir": str(out), "progress": False, "plot": False, "tensorboard": False},
    }  # fmt: skip
    for key, value in sections.items():
        config.setdefault(key, {}).update(value)
    return config


def write_yaml(config: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(**extra: str) -> dict[str, str]:
    """Environment of a recipe subprocess: offline, one thread (bitwise-reproducible on CPU)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.update(extra)
    return env


def launch(
    recipe: str, config: Path, *args: str, env: dict[str, str] | None = None, **popen: Any
) -> subprocess.Popen[str]:
    """Start ``python -m rewardkit.cli <recipe> --config <config> ...`` from the repository root."""
    return subprocess.Popen(
        [sys.executable, "-m", "rewardkit.cli", recipe, "--config", str(config), *args],
        cwd=REPO, env=env or cli_env(), text=True, **popen,
    )  # fmt: skip
