"""Shard the frozen base of a LoRA-trained denoiser with FSDP2 (``torch.distributed.fsdp.fully_shard``).

The settings come from accelerate: ``accelerate launch --config_file fsdp.yaml`` exports
``ACCELERATE_USE_FSDP`` and the ``FSDP_*`` variables, and accelerate's own
``FullyShardedDataParallelPlugin`` parses them (:func:`fsdp_settings_from_accelerate`). The
sharding itself is torch's FSDP2, applied by :func:`shard_denoiser` to each repeated block and
then to the root:

* the **frozen base** is sharded over the processes (each holds ``1/P`` of every block and
  all-gathers one block at a time in forward and backward);
* the **LoRA parameters** are FSDP's ``ignored_params``: float32, whole on every process, their
  gradients averaged by the recipes' one flat all-reduce. They are a small fraction of the model
  (the planner prints how small), and keeping them whole keeps checkpoints, EMA, the KL
  reference and the optimizer state independent of the number of processes: a run saved on 2
  processes resumes on 1 or on 4.

FSDP all-gathers in every forward, so every process must call the denoiser the same number of
times; the recipes check their plans for that before the first rollout.
"""

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["FSDPSettings", "fsdp_settings_from_accelerate", "shard_denoiser"]


@dataclass(frozen=True)
class FSDPSettings:
    """How to shard the denoiser (read from an accelerate FSDP config).

    Attributes:
        reshard_after_forward: free the gathered block after its forward (ZeRO-3 style) and
            gather it again for backward; False keeps it until backward (ZeRO-2 style: faster,
            more memory).
        offload_params: keep the shards in CPU memory (CUDA only; FSDP2's ``CPUOffloadPolicy``).
        wrap: class names of the blocks sharded one by one; empty: the model's ``_no_split_modules``
            (``QwenImageTransformerBlock``; ``Flux2TransformerBlock`` and ``Flux2SingleTransformerBlock``).
        activation_checkpointing: recompute block activations in backward (the backbone's
            gradient checkpointing, the same switch as ``model.gradient_checkpointing``).
    """

    reshard_after_forward: bool = True
    offload_params: bool = False
    wrap: tuple[str, ...] = ()
    activation_checkpointing: bool = False


def fsdp_settings_from_accelerate() -> FSDPSettings | None:
    """The FSDP settings of ``accelerate launch --config_file ...``, or None without FSDP.

    Raises:
        ValueError: an FSDP1 config (``fsdp_version: 1``): rewardkit shards with FSDP2.
    """
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return None
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import CPUOffloadPolicy

    plugin = FullyShardedDataParallelPlugin()  # parses the FSDP_* variables accelerate exported
    if plugin.fsdp_version != 2:
        raise ValueError(
            f"the accelerate config asks for fsdp_version {plugin.fsdp_version}; rewardkit shards "
            "with FSDP2: set fsdp_version: 2 in fsdp_config"
        )
    offload = isinstance(plugin.cpu_offload, CPUOffloadPolicy)
    names = plugin.transformer_cls_names_to_wrap or []
    return FSDPSettings(
        reshard_after_forward=bool(plugin.reshard_after_forward),
        offload_params=offload,
        wrap=tuple(names if isinstance(names, list) else str(names).split(",")),
        activation_checkpointing=bool(plugin.activation_checkpointing),
    )


def shard_denoiser(
    module: nn.Module,
    settings: FSDPSettings,
    *,
    ignored: Iterable[nn.Parameter],
    device: torch.device,
) -> int:
    """Shard ``module``'s parameters, except ``ignored``, over the default process group.

    Each block (``settings.wrap`` or ``module._no_split_modules``) becomes one FSDP unit, then
    the root takes what is left (embeddings, norms, projections). Returns the number of blocks
    sharded.

    Raises:
        ValueError: no block class to wrap, or none of that class in ``module``.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    names = settings.wrap or tuple(getattr(module, "_no_split_modules", None) or ())
    if not names:
        raise ValueError(
            f"{type(module).__name__} names no repeated blocks (_no_split_modules); set "
            "fsdp_transformer_layer_cls_to_wrap in the accelerate config"
        )
    blocks = [m for m in module.modules() if type(m).__name__ in names]
    if not blocks:
        raise ValueError(f"fsdp_transformer_layer_cls_to_wrap: no {names} module in {type(module).__name__}")
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    # Offloading shards to the CPU only makes sense when they would otherwise sit on a GPU.
    offload = CPUOffloadPolicy() if settings.offload_params and device.type == "cuda" else OffloadPolicy()
    kwargs: dict[str, Any] = {
        "mesh": mesh,
        "reshard_after_forward": settings.reshard_after_forward,
        "offload_policy": offload,
        "ignored_params": set(ignored),
    }
    for block in blocks:
        fully_shard(block, **kwargs)
    fully_shard(module, **kwargs)
    return len(blocks)
