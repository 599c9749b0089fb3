"""Training building blocks: checkpoints, RNG capture, EMA."""

from rewardkit.training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from rewardkit.training.ema import EMAState, ema_decay, ema_init, ema_update
from rewardkit.training.rng import capture_rng_state, restore_rng_state

__all__ = [
    "CheckpointError",
    "EMAState",
    "capture_rng_state",
    "ema_decay",
    "ema_init",
    "ema_update",
    "latest_checkpoint",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]
