"""GPU memory planning for LoRA training of the real backbones (``rewardkit plan``).

Pure memory model (:mod:`rewardkit.planning.memory`), activations measured on the ``meta`` device
(:mod:`rewardkit.planning.activations`) and the peak of a sampling forward
(:mod:`rewardkit.planning.inference`), the backbone hook's types
(:mod:`rewardkit.planning.model`) and measured peaks to check against
(:mod:`rewardkit.planning.measure`). Nothing here imports diffusers at import time.
"""

from rewardkit.planning.memory import (
    MemoryEstimate,
    activation_bytes,
    fsdp_gather_bytes,
    lora_bytes,
    lora_resident_bytes,
    max_micro_batch,
    transient_bytes,
    weight_bytes,
)
from rewardkit.planning.model import PlanModel, PlanShape, count_parameters

__all__ = [
    "MemoryEstimate",
    "PlanModel",
    "PlanShape",
    "activation_bytes",
    "count_parameters",
    "fsdp_gather_bytes",
    "lora_bytes",
    "lora_resident_bytes",
    "max_micro_batch",
    "transient_bytes",
    "weight_bytes",
]
