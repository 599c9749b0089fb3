r"""Activation memory measured from one forward on the ``meta`` device (no weights, no compute).

:func:`profile_activations` runs the transformer forward inside
:func:`torch.autograd.graph.saved_tensors_hooks` and adds up the tensors autograd keeps for the
backward pass. On ``meta`` every tensor has its shape and dtype but no data, so the 20B Qwen-Image
transformer runs in about a second on a CPU.

* **Saved set.** Each saved tensor is keyed by its storage (views share one) and counted once,
  at its storage's size; parameters (weights the optimizer or the frozen base already owns) are
  left out. It is attributed to the outermost repeated block (``PlanModel.block_classes``)
  running when it was saved, or to "outside blocks".
* **Block inputs.** A forward pre-hook on each block adds up its tensor inputs (deduplicated, so
  the shared time embedding and RoPE tables count once): what gradient checkpointing keeps.
* **Attention.** On ``meta`` (and on CPU with a mask) SDPA falls back to the math kernel, which
  saves the $L \times L$ attention matrix. GPU training uses the flash / memory-efficient kernels,
  which save only their inputs $q, k, v$, the output and a float32 log-sum-exp per query row.
  With ``flash=True`` (default) ``scaled_dot_product_attention`` is replaced during the meta
  forward by an autograd function that saves exactly those. CPU SDPA without a mask uses a
  flash kernel too, so the CPU measurements of the tests check the same model.
* **Transient.** A :class:`~torch.utils._python_dispatch.TorchDispatchMode` records the largest
  tensor any op creates (``largest_tensor``): the temporaries of one block (an MLP hidden state,
  its gradient) on top of what is saved.
"""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from rewardkit.planning.model import PlanModel, PlanShape, count_parameters

__all__ = ["ActivationProfile", "attach_lora", "flash_attention", "profile_activations"]


@dataclass(frozen=True)
class ActivationProfile:
    """What one forward of one shape keeps for backward, in bytes.

    Attributes:
        saved: all saved non-parameter tensors (deduplicated by storage).
        outside_blocks: the part of ``saved`` saved outside the repeated blocks.
        per_block: the part of ``saved`` saved inside each block, in block order.
        block_inputs: the tensor inputs of all blocks (deduplicated), what checkpointing keeps.
        per_block_recompute: the part of ``per_block`` that is not the block's own inputs (what
            a checkpointed block re-creates in its recompute; its inputs are kept anyway).
        largest_tensor: the largest tensor any op created in the forward.
    """

    saved: int
    outside_blocks: int
    per_block: tuple[int, ...]
    block_inputs: int
    largest_tensor: int
    per_block_recompute: tuple[int, ...] = ()

    @property
    def largest_block(self) -> int:
        """Saved bytes of the block that saves the most (one block's recompute set)."""
        return max(self.per_block, default=0)

    @property
    def checkpointed(self) -> int:
        r"""Saved bytes with gradient checkpointing of every block.

        $A_{ckpt} = A_{outside} + \sum_b \mathrm{inputs}_b + \max_b A^{re}_b$: the block
        inputs stay, one block's saved set (less its inputs, already kept) is rebuilt at a time
        during backward.
        """
        return self.outside_blocks + self.block_inputs + max(self.per_block_recompute, default=0)


def _storage_key(t: torch.Tensor) -> int:
    return int(t.untyped_storage()._cdata)


def _storage_bytes(t: torch.Tensor) -> int:
    return int(t.untyped_storage().nbytes())


class _FlashLikeAttention(torch.autograd.Function):
    """SDPA as the flash kernel keeps it: saves q, k, v, the output and a float32 log-sum-exp."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = q.new_empty((*q.shape[:-1], v.shape[-1]))
        lse = q.new_empty(q.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, ...]:  # pragma: no cover
        raise RuntimeError("the flash-like attention of the memory planner has no backward")


def _flash_sdpa(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any, **kwargs: Any
) -> torch.Tensor:
    out: torch.Tensor = _FlashLikeAttention.apply(query, key, value)
    return out


@contextmanager
def flash_attention() -> Iterator[None]:
    """Replace ``torch.nn.functional.scaled_dot_product_attention`` by the flash-like stand-in.

    Only for meta-device forwards: the stand-in returns an uninitialised output.
    """
    original = torch.nn.functional.scaled_dot_product_attention
    torch.nn.functional.scaled_dot_product_attention = _flash_sdpa
    try:
        yield
    finally:
        torch.nn.functional.scaled_dot_product_attention = original


class _LargestTensor(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Records the size of the largest tensor an op returns."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.largest = 0

    def __torch_dispatch__(
        self, func: Any, types: Any, args: Any = (), kwargs: Mapping[str, Any] | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.largest = max(self.largest, leaf.numel() * leaf.element_size())
        return out


def attach_lora(
    transformer: torch.nn.Module, *, rank: int, target_modules: Sequence[str], dtype: torch.dtype
) -> int:
    r"""Attach a peft LoRA adapter (on the transformer's device) and freeze the base.

    Args:
        transformer: the model, on ``meta`` or a real device; changed in place.
        rank: LoRA rank r.
        target_modules: module names to adapt (the adapter's ``lora_target_modules``).
        dtype: dtype of the LoRA weights (float32 master weights in training; on ``meta`` the
            compute dtype, as under autocast).

    Returns:
        The number of trainable LoRA parameters, $\sum_{\ell} r\,(d^{in}_\ell + d^{out}_\ell)$.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive int, got {rank!r}")
    device = next(transformer.parameters()).device
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=list(target_modules))
    with torch.device(device):
        inject_adapter_in_model(config, transformer)
    for name, param in transformer.named_parameters():
        is_lora = "lora_" in name
        if is_lora:
            param.data = param.data.to(dtype)
        param.requires_grad_(is_lora)
    return count_parameters(transformer, trainable=True)


def profile_activations(
    model: PlanModel, shape: PlanShape, *, dtype: torch.dtype, flash: bool = True
) -> ActivationProfile:
    """Run one forward of ``model.transformer`` and measure what it saves for backward.

    The transformer should already carry its trainable LoRA (:func:`attach_lora`), so the frozen
    layers' inputs that LoRA's gradients need are saved. The forward runs on the transformer's
    device: ``meta`` for planning, a real device to cross-check.

    Args:
        model: the backbone's plan model.
        shape: the forward's shape (``shape.batch`` samples).
        dtype: dtype of the inputs (the weights' dtype, or the autocast dtype).
        flash: model flash attention (only valid on ``meta``; see the module docstring).

    Returns:
        The :class:`ActivationProfile` of this forward.
    """
    transformer = model.transformer
    device = next(transformer.parameters()).device
    if flash and device.type != "meta":
        raise ValueError(f"flash=True only applies to a meta-device forward; the model is on {device}")
    params = {_storage_key(p) for p in transformer.parameters()}
    params |= {_storage_key(b) for b in transformer.buffers()}
    seen: set[int] = set()
    seen_inputs: set[int] = set()
    blocks = model.blocks()
    per_block = [0] * len(blocks)
    recompute = [0] * len(blocks)
    block_input_keys: list[set[int]] = [set() for _ in blocks]
    outside = 0
    inputs = 0
    active: list[int] = []
    keep: list[torch.Tensor] = []  # held, so no storage address is reused while we count

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal outside
        key = _storage_key(t)
        if key in params or key in seen:
            return t
        seen.add(key)
        if active:
            per_block[active[0]] += _storage_bytes(t)
            if key not in block_input_keys[active[0]]:
                recompute[active[0]] += _storage_bytes(t)
        else:
            outside += _storage_bytes(t)
        return t

    def pre_hook(index: int) -> Any:
        def hook(module: torch.nn.Module, args: Any, kwargs: Any) -> None:
            nonlocal inputs
            if not active:
                for leaf in tree_leaves((args, kwargs)):
                    if isinstance(leaf, torch.Tensor):
                        key = _storage_key(leaf)
                        block_input_keys[index].add(key)
                        if key not in params and key not in seen_inputs:
                            seen_inputs.add(key)
                            keep.append(leaf)
                            inputs += _storage_bytes(leaf)
            active.append(index)

        return hook

    def post_hook(module: torch.nn.Module, args: Any, output: Any) -> None:
        active.pop()

    handles = []
    for i, block in enumerate(blocks):
        handles.append(block.register_forward_pre_hook(pre_hook(i), with_kwargs=True))
        handles.append(block.register_forward_hook(post_hook))
    kwargs = dict(model.forward_kwargs(shape, device, dtype))
    largest = _LargestTensor()
    try:
        with (
            flash_attention() if flash else _nullcontext(),
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
            largest,
        ):
            out = transformer(**kwargs)
        del out
    finally:
        for handle in handles:
            handle.remove()
    return ActivationProfile(
        saved=outside + sum(per_block),
        outside_blocks=outside,
        per_block=tuple(per_block),
        block_inputs=inputs,
        largest_tensor=largest.largest,
        per_block_recompute=tuple(recompute),
    )


@contextmanager
def _nullcontext() -> Iterator[None]:
    yield
