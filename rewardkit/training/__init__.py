"""Training building blocks: checkpoints, RNG capture, EMA, whole-group gathering, LoRA export."""

from rewardkit.training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from rewardkit.training.distributed import GatheredBatch, gather_batch, gather_samples, rank_and_world_size
from rewardkit.training.ema import EMAState, ema_decay, ema_init, ema_update
from rewardkit.training.export import LoraExport, export_lora, load_lora
from rewardkit.training.rng import capture_rng_state, restore_rng_state

__all__ = [
    "CheckpointError",
    "EMAState",
    "GatheredBatch",
    "LoraExport",
    "capture_rng_state",
    "ema_decay",
    "ema_init",
    "ema_update",
    "export_lora",
    "gather_batch",
    "gather_samples",
    "latest_checkpoint",
    "load_checkpoint",
    "load_lora",
    "rank_and_world_size",
    "restore_rng_state",
    "save_checkpoint",
]
