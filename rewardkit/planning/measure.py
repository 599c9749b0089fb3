"""Measure the real memory peak of a training micro-step, to check the planner against.

* **CPU.** :func:`torch.profiler.profile` with ``profile_memory=True`` records every allocation
  and free as a ``[memory]`` event with a signed byte count. Summing them in event order gives
  the bytes allocated above the start of the profiled region; its running maximum is the peak.
* **CUDA.** ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the
  bytes allocated at the start.

Both count the caching allocator's tensor bytes (not its reserved-but-free blocks, not the
CUDA context), which is what the planner models.
"""

from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["lora_training_step", "peak_bytes"]


def _cpu_peak(fn: Callable[[], None]) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for event in events:
        if str(event.device_type()) != "DeviceType.CPU":
            continue
        current += int(event.nbytes())
        peak = max(peak, current)
    return peak


def _cuda_peak(fn: Callable[[], None], device: torch.device) -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device)) - int(start)


def peak_bytes(fn: Callable[[], None], device: str | torch.device = "cpu") -> int:
    r"""Peak of the bytes allocated while ``fn()`` runs, above what was allocated before it.

    Args:
        fn: the work to measure (e.g. one training micro-step).
        device: ``"cpu"`` (profiler memory events) or a CUDA device (the allocator's peak).

    Returns:
        $\max_t \sum_{e \le t} \Delta_e$ over the allocation events $e$ of ``fn``
        (allocations positive, frees negative); 0 if nothing was allocated.

    Example:
        >>> peak_bytes(lambda: None)
        0
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return _cuda_peak(fn, dev)
    if dev.type != "cpu":
        raise ValueError(f"device must be 'cpu' or a CUDA device, got {device!r}")
    return _cpu_peak(fn)


def lora_training_step(
    transformer: torch.nn.Module,
    inputs: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
) -> None:
    """One training micro-step: forward, a mean-square loss on the velocity, backward, AdamW step.

    The gradients are released (``zero_grad(set_to_none=True)``) after the step, so they count
    inside the step's peak, as in the recipes.

    Args:
        transformer: the model with its trainable LoRA (base frozen).
        inputs: the forward's keyword arguments (``PlanModel.forward_kwargs``).
        optimizer: the optimizer over the LoRA parameters.
    """
    out = transformer(**inputs)[0]
    loss = out.float().square().mean()
    del out
    loss.backward()
    del loss
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
