r"""Peak memory of a sampling forward (no gradients), measured on the ``meta`` device.

A GRPO rollout calls the transformer under :func:`torch.no_grad`: nothing is saved for backward,
so its memory is what is *alive at once* during the forward: the inputs, the hidden states
passed between blocks, one block's temporaries (attention's $q, k, v$, an MLP hidden state) and
the output. :func:`sampling_peak_bytes` follows every tensor an op creates with a
:class:`~torch.utils._python_dispatch.TorchDispatchMode`, keyed by its storage (views share
one) and released when the last tensor of that storage is garbage-collected
(:func:`weakref.finalize`); the running maximum of the live bytes is the peak. Parameters and
buffers are left out (the frozen weights are counted once by the memory model), and SDPA is the
flash-like stand-in of :func:`~rewardkit.planning.activations.flash_attention`, which allocates
only its output, as the GPU kernels do.
"""

import weakref
from collections.abc import Mapping
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from rewardkit.planning.activations import _storage_key, flash_attention
from rewardkit.planning.model import PlanModel, PlanShape

__all__ = ["sampling_peak_bytes"]


class _LiveBytes(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Live bytes of the storages ops create (less ``excluded`` ones) and their running peak."""

    def __init__(self, excluded: set[int]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.excluded = excluded
        self.tensors: dict[int, int] = {}  # storage key -> live tensors on it
        self.sizes: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        self.tensors[key] -= 1
        if self.tensors[key] == 0:
            del self.tensors[key]
            self.current -= self.sizes.pop(key)

    def __torch_dispatch__(
        self, func: Any, types: Any, args: Any = (), kwargs: Mapping[str, Any] | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if not isinstance(leaf, torch.Tensor):
                continue
            key = _storage_key(leaf)
            if key in self.excluded:
                continue  # a view of a weight or of an input
            if key not in self.tensors:
                self.tensors[key] = 0
                self.sizes[key] = int(leaf.untyped_storage().nbytes())
                self.current += self.sizes[key]
                self.peak = max(self.peak, self.current)
            self.tensors[key] += 1
            weakref.finalize(leaf, self._release, key).atexit = False  # nothing to count at exit
        return out


def sampling_peak_bytes(model: PlanModel, shape: PlanShape, *, dtype: torch.dtype) -> int:
    """Peak bytes alive during one no-gradient forward of ``model.transformer`` at ``shape``.

    Counts the forward's inputs (latents, reference latents, text embeddings, as
    ``model.forward_kwargs`` builds them) plus the running maximum of what the forward's ops
    allocate and have not yet released. Weights and buffers are not counted.

    Args:
        model: the backbone's plan model, with its LoRA attached or not, on ``meta``.
        shape: the forward's shape (``shape.batch`` samples).
        dtype: dtype of the inputs (the compute dtype).

    Returns:
        The peak bytes of one sampling forward.

    Raises:
        ValueError: the transformer is not on the ``meta`` device (the stand-in attention
            returns uninitialised outputs).
    """
    transformer = model.transformer
    device = next(transformer.parameters()).device
    if device.type != "meta":
        raise ValueError(f"sampling_peak_bytes runs on the meta device; the model is on {device}")
    excluded = {_storage_key(p) for p in transformer.parameters()}
    excluded |= {_storage_key(b) for b in transformer.buffers()}
    kwargs = dict(model.forward_kwargs(shape, device, dtype))
    inputs = 0
    for leaf in tree_leaves(kwargs):
        if isinstance(leaf, torch.Tensor) and _storage_key(leaf) not in excluded:
            excluded.add(_storage_key(leaf))
            inputs += int(leaf.untyped_storage().nbytes())
    live = _LiveBytes(excluded)
    with torch.no_grad(), flash_attention(), live:
        out = transformer(**kwargs)
        del out
    return inputs + live.peak
