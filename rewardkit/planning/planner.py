"""The planner: a backbone's meta-device model + the memory model → per-GPU rows.

:func:`plan_memory` asks the backbone plug-in (through the registry) for its transformer on the
``meta`` device, attaches the LoRA adapter, measures one sample's activations
(:func:`~rewardkit.planning.activations.profile_activations`) and evaluates the memory model
(:mod:`rewardkit.planning.memory`) for DDP and FSDP, with gradient checkpointing off and on,
and for the GRPO rollout forward (no gradients; :mod:`rewardkit.planning.inference`).
"""

import math
from dataclasses import dataclass

import torch

from rewardkit.planning.activations import ActivationProfile, attach_lora, profile_activations
from rewardkit.planning.inference import sampling_peak_bytes
from rewardkit.planning.memory import (
    GIB,
    MemoryEstimate,
    fsdp_gather_bytes,
    lora_bytes,
    lora_resident_bytes,
    transient_bytes,
    weight_bytes,
)
from rewardkit.planning.model import PlanModel, PlanShape, count_parameters

__all__ = ["DTYPES", "PlanReport", "PlanRow", "build_plan_model", "plan_memory"]

#: ``--dtype`` names → torch dtypes of the frozen weights and the compute.
DTYPES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float32": torch.float32,
}


@dataclass(frozen=True)
class PlanRow:
    """One setup's per-GPU memory: a training micro-step, or a rollout (sampling) forward.

    Attributes:
        strategy: ``"DDP"`` (replicated base) or ``"FSDP"`` (sharded base).
        checkpointing: gradient checkpointing of the transformer blocks (``False`` for rollouts).
        estimate: the memory terms.
        max_micro_batch: the largest micro-batch that fits the GPU (0: none); for a rollout, the
            largest ``rollout.micro_batch``.
        accumulation_steps: micro-steps (for a rollout: transformer calls per sampling step) for
            one group of ``group_size`` samples at that micro-batch (``None`` without a group
            size or when nothing fits).
    """

    strategy: str
    checkpointing: bool
    estimate: MemoryEstimate
    max_micro_batch: int
    accumulation_steps: int | None


@dataclass(frozen=True)
class PlanReport:
    """The planner's answer for one backbone and training shape.

    Attributes:
        backbone: registry name.
        variant: the variant planned.
        shape: the training forward's shape per sample (``batch`` = 1).
        dtype: weight / compute dtype name.
        processes: number of processes P.
        gpu_memory: bytes per GPU.
        text_encoder_on_gpu: the text encoder's weights are counted on the GPU.
        transformer_params: base transformer parameters.
        text_encoder_params: text encoder parameters.
        vae_params: VAE parameters.
        lora_params: trainable LoRA parameters.
        lora_rank: the LoRA rank.
        largest_block_params: parameters of the largest repeated block.
        activations: the measured activation profile of one sample.
        rows: training micro-step, DDP/FSDP × checkpointing off/on.
        sampling_peak: peak bytes alive during one sample's rollout forward (no gradients).
        rollout_rows: the rollout forward, DDP and FSDP.
    """

    backbone: str
    variant: str
    shape: PlanShape
    dtype: str
    processes: int
    gpu_memory: int
    text_encoder_on_gpu: bool
    transformer_params: int
    text_encoder_params: int
    vae_params: int
    lora_params: int
    lora_rank: int
    largest_block_params: int
    activations: ActivationProfile
    rows: tuple[PlanRow, ...]
    sampling_peak: int
    rollout_rows: tuple[PlanRow, ...]


def build_plan_model(backbone: str, variant: str | None = None, *, device: str = "meta") -> PlanModel:
    """The backbone's :class:`PlanModel` through the registry's plug-in hook.

    Args:
        backbone: registry name (``rewardkit.list_backbones()``).
        variant: the backbone's variant (``None``: its default).
        device: where to build the transformer (``"meta"``: no weights).

    Returns:
        The plan model.

    Raises:
        ValueError: the backbone has no ``plan`` hook, or an unknown variant.
    """
    from rewardkit.backbone.registry import get_plugin

    plugin = get_plugin(backbone)
    if plugin.plan is None:
        raise ValueError(f"backbone {backbone!r} provides no memory-planner hook (BackbonePlugin.plan)")
    model = plugin.plan(variant, device=device)
    if not isinstance(model, PlanModel):
        raise TypeError(
            f"backbone {backbone!r}'s plan hook must return a PlanModel, got {type(model).__name__}"
        )
    return model


def _largest_block_params(model: PlanModel) -> int:
    best = 0
    for block in model.blocks():
        n = sum(p.numel() for name, p in block.named_parameters() if "lora_" not in name)
        best = max(best, n)
    return best


def plan_memory(
    backbone: str,
    *,
    variant: str | None = None,
    resolution: int = 1024,
    references: int = 3,
    reference_size: int | None = None,
    text_tokens: int | None = None,
    lora_rank: int = 64,
    processes: int = 8,
    gpu_memory_gib: float = 80.0,
    dtype: str = "bfloat16",
    text_encoder_on_gpu: bool = True,
    group_size: int | None = None,
    ema: bool = False,
    kl_reference: bool = False,
) -> PlanReport:
    """Plan the per-GPU memory of LoRA training and GRPO rollouts of ``backbone`` (on ``meta``).

    Args:
        backbone: registry name.
        variant: backbone variant (``None``: the default one).
        resolution: square target side in pixels (a multiple of the backbone's token size).
        references: reference images per sample.
        reference_size: side of each square reference (default: ``resolution``).
        text_tokens: prompt tokens (default: the backbone's typical count for ``references``).
        lora_rank: LoRA rank r.
        processes: number of processes P (GPUs).
        gpu_memory_gib: memory per GPU in GiB.
        dtype: dtype of the frozen weights and the compute (``bfloat16``, ``float16``, ``float32``).
        text_encoder_on_gpu: count the text encoder's weights on the GPU (else it is offloaded).
        group_size: samples per GRPO group (reports the micro-steps per group).
        ema: keep an EMA copy of the LoRA weights.
        kl_reference: keep a KL-reference copy of the LoRA weights.

    Returns:
        The :class:`PlanReport`.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    for name, value in (("processes", processes), ("lora_rank", lora_rank)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if group_size is not None and (isinstance(group_size, bool) or group_size < 1):
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if not (isinstance(gpu_memory_gib, int | float) and math.isfinite(gpu_memory_gib) and gpu_memory_gib > 0):
        raise ValueError(f"gpu_memory_gib must be a positive number, got {gpu_memory_gib!r}")
    model = build_plan_model(backbone, variant)
    m = model.multiple_of
    ref_size = resolution if reference_size is None else reference_size
    for name, value in (("resolution", resolution), ("reference_size", ref_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < m or value % m:
            raise ValueError(f"{name} must be a positive multiple of {m} px for {backbone}, got {value!r}")
    tokens = model.default_text_tokens(references) if text_tokens is None else text_tokens
    shape = PlanShape(1, resolution, resolution, references, ref_size, tokens)
    torch_dtype = DTYPES[dtype]
    b = torch.empty((), dtype=torch_dtype).element_size()
    n_base = count_parameters(model.transformer)
    n_block = _largest_block_params(model)
    torch.nn.Module.to(model.transformer, torch_dtype)  # not diffusers' to(), which warns
    # LoRA in the compute dtype: under autocast its matmuls and saved inputs are in that dtype;
    # its float32 master state is counted by lora_bytes.
    n_lora = attach_lora(
        model.transformer, rank=lora_rank, target_modules=model.lora_target_modules, dtype=torch_dtype
    )
    profile = profile_activations(model, shape, dtype=torch_dtype)
    sampling = sampling_peak_bytes(model, shape, dtype=torch_dtype)
    budget = int(gpu_memory_gib * GIB)
    frozen = (model.text_encoder_params if text_encoder_on_gpu else 0) + model.vae_params
    lora_step = lora_bytes(n_lora, processes=processes, ema=ema, kl_reference=kl_reference)
    lora_between_steps = lora_resident_bytes(n_lora, ema=ema, kl_reference=kl_reference)
    rows, rollout_rows = [], []
    for strategy in ("DDP", "FSDP"):
        sharded = strategy == "FSDP"
        fixed = {  # the same in training and in rollouts
            "weights": weight_bytes(n_base, b, processes=processes, sharded=sharded),
            "fsdp_gather": fsdp_gather_bytes(n_block, b, sharded=sharded and processes > 1),
            "frozen_components": frozen * b,
        }
        for checkpointing in (False, True):
            activations = profile.checkpointed if checkpointing else profile.saved
            transient = transient_bytes(profile.largest_tensor)
            estimate = MemoryEstimate(**fixed, lora=lora_step, activations_per_sample=activations,
                                      transient_per_sample=transient)  # fmt: skip
            rows.append(_row(strategy, checkpointing, estimate, budget, group_size))
        rollout = MemoryEstimate(**fixed, lora=lora_between_steps, activations_per_sample=sampling,
                                 transient_per_sample=0)  # fmt: skip
        rollout_rows.append(_row(strategy, False, rollout, budget, group_size))
    return PlanReport(
        backbone=model.backbone,
        variant=model.variant,
        shape=shape,
        dtype=dtype,
        processes=processes,
        gpu_memory=budget,
        text_encoder_on_gpu=text_encoder_on_gpu,
        transformer_params=n_base,
        text_encoder_params=model.text_encoder_params,
        vae_params=model.vae_params,
        lora_params=n_lora,
        lora_rank=lora_rank,
        largest_block_params=n_block,
        activations=profile,
        rows=tuple(rows),
        sampling_peak=sampling,
        rollout_rows=tuple(rollout_rows),
    )


def _row(
    strategy: str, checkpointing: bool, estimate: MemoryEstimate, budget: int, group: int | None
) -> PlanRow:
    fits = estimate.max_micro_batch(budget)
    steps = None if group is None or fits == 0 else -(-group // fits)
    return PlanRow(strategy, checkpointing, estimate, fits, steps)
