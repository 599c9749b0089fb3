"""Capture and restore every random number generator a training loop touches, for exact resume."""

import random
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng_state", "restore_rng_state"]


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and (if present) CUDA generator states, checkpoint-ready."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def _numpy_state() -> tuple[str, list[int], int, int, float]:
    """The global numpy MT19937 state with its key array as plain ints (JSON-able)."""
    kind, keys, pos, has_gauss, gauss_value = np.random.get_state(legacy=True)
    return (str(kind), [int(k) for k in keys], int(pos), int(has_gauss), float(gauss_value))


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators captured by [`capture_rng_state`][rewardkit.training.capture_rng_state]."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    kind, keys, pos, has_gauss, gauss_value = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss_value))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
