r"""The per-GPU memory model of one LoRA training micro-step (pure functions).

For P processes, micro-batch m, $b$ bytes per base weight, the peak bytes of one GPU during one
micro-step (forward, backward, AdamW step) are

$$M(m) = W + G + F + S_{LoRA} + m\,(A + T)$$

* $W$ (:func:`weight_bytes`): the frozen transformer, $n_{base} b / P$ sharded by FSDP, or
  $n_{base} b$ replicated by DDP.
* $G$ (:func:`fsdp_gather_bytes`): FSDP's working set, two unsharded blocks (the one computing
  and the one being all-gathered ahead), $2\,n_{block} b$; 0 under DDP.
* $F$: the text encoder and VAE weights when they sit on the GPU (replicated; the text encoder
  can be offloaded to the CPU).
* $S_{LoRA}$ (:func:`lora_bytes`): the float32 LoRA state, replicated on every process also
  under FSDP (rewardkit passes the LoRA parameters to ``fully_shard`` as ``ignored_params`` and
  averages their gradients with one flat all-reduce).
* $A$: activations saved for backward per sample, measured on the ``meta`` device
  (:mod:`rewardkit.planning.activations`); with gradient checkpointing, the block inputs plus one
  block's saved set.
* $T$: the transient of one block per sample, $2\times$ the largest tensor of the forward
  (its gradient and the gradient of its input exist at once during that op's backward).

A GRPO **rollout** forward (sampling, no gradients) has the same $W + G + F$, the LoRA state
that stays between optimizer steps (:func:`lora_resident_bytes`: no gradients, no all-reduce
buffer) and, per sample, the peak of what is alive during the forward
(:mod:`rewardkit.planning.inference`) instead of $A + T$.
"""

from dataclasses import dataclass

__all__ = [
    "MemoryEstimate",
    "activation_bytes",
    "fsdp_gather_bytes",
    "lora_bytes",
    "lora_resident_bytes",
    "max_micro_batch",
    "transient_bytes",
    "weight_bytes",
]

GIB = 1024**3


def _check_count(name: str, value: int, *, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative"
        raise ValueError(f"{name} must be {kind} int, got {value!r}")


def weight_bytes(n_params: int, dtype_bytes: int, *, processes: int = 1, sharded: bool = False) -> int:
    r"""Bytes per GPU of frozen weights: $\lceil n\,b / P\rceil$ sharded (FSDP), else $n\,b$ (DDP).

    Args:
        n_params: parameter count n.
        dtype_bytes: bytes per parameter b (2 for bfloat16).
        processes: number of processes P (GPUs).
        sharded: FSDP shards the weights over the P processes; DDP replicates them.

    Returns:
        The bytes one GPU holds.

    Example:
        >>> weight_bytes(10, 2, processes=4, sharded=True), weight_bytes(10, 2, processes=4)
        (5, 20)
    """
    _check_count("n_params", n_params)
    _check_count("dtype_bytes", dtype_bytes, minimum=1)
    _check_count("processes", processes, minimum=1)
    total = n_params * dtype_bytes
    return -(-total // processes) if sharded else total


def fsdp_gather_bytes(largest_block_params: int, dtype_bytes: int, *, sharded: bool) -> int:
    r"""FSDP's unsharded working set: $2\,n_{block}\,b$ (current block + prefetched all-gather).

    Args:
        largest_block_params: parameters of the largest FSDP unit (a repeated block).
        dtype_bytes: bytes per parameter b.
        sharded: FSDP on; DDP has no all-gather (0).

    Returns:
        The bytes of the all-gathered blocks.

    Example:
        >>> fsdp_gather_bytes(100, 2, sharded=True), fsdp_gather_bytes(100, 2, sharded=False)
        (400, 0)
    """
    _check_count("largest_block_params", largest_block_params)
    _check_count("dtype_bytes", dtype_bytes, minimum=1)
    return 2 * largest_block_params * dtype_bytes if sharded else 0


def lora_bytes(n_lora: int, *, processes: int = 1, ema: bool = False, kl_reference: bool = False) -> int:
    r"""Float32 LoRA state per GPU (replicated under DDP and FSDP alike).

    $S = n\,(4 + 4 + 8) + 4n\,[P > 1] + 4n\,[\mathrm{ema}] + 4n\,[\mathrm{kl}]$: weights, gradients,
    AdamW's two moments, the flat all-reduce buffer of the gradients, an EMA copy and a copy for
    the KL reference.

    Args:
        n_lora: trainable LoRA parameters n.
        processes: P; one process needs no all-reduce buffer.
        ema: an exponential moving average of the weights is kept.
        kl_reference: a frozen copy of the adapter is kept as the KL reference.

    Returns:
        The bytes of the LoRA state on one GPU.

    Example:
        >>> lora_bytes(10), lora_bytes(10, processes=8, ema=True, kl_reference=True)
        (160, 280)
    """
    _check_count("processes", processes, minimum=1)
    gradients = 4 * n_lora * (1 + (processes > 1))  # released after each step
    return lora_resident_bytes(n_lora, ema=ema, kl_reference=kl_reference) + gradients


def lora_resident_bytes(n_lora: int, *, ema: bool = False, kl_reference: bool = False) -> int:
    r"""Float32 LoRA state that stays on each GPU between optimizer steps (e.g. during rollouts).

    $S_{res} = n\,(4 + 8) + 4n\,[\mathrm{ema}] + 4n\,[\mathrm{kl}]$: weights and AdamW's two
    moments (the gradients and their all-reduce buffer are released after each step), an EMA
    copy and a KL-reference copy.

    Args:
        n_lora: trainable LoRA parameters n.
        ema: an exponential moving average of the weights is kept.
        kl_reference: a frozen copy of the adapter is kept as the KL reference.

    Returns:
        The bytes of the resident LoRA state on one GPU.

    Example:
        >>> lora_resident_bytes(10), lora_resident_bytes(10, ema=True, kl_reference=True)
        (120, 200)
    """
    _check_count("n_lora", n_lora)
    return n_lora * (12 + 4 * ema + 4 * kl_reference)


def transient_bytes(largest_tensor: int) -> int:
    r"""The transient of one op's backward per sample: $T = 2\,t_{max}$.

    Args:
        largest_tensor: bytes of the largest tensor one forward (one sample) creates.

    Returns:
        Twice that: the gradient of that tensor and the gradient of its input at once.

    Example:
        >>> transient_bytes(5)
        10
    """
    _check_count("largest_tensor", largest_tensor)
    return 2 * largest_tensor


def activation_bytes(micro_batch: int, per_sample: int, transient_per_sample: int = 0) -> int:
    r"""Activation bytes of a micro-batch: $m\,(A + T)$.

    Args:
        micro_batch: samples per micro-step m.
        per_sample: saved activations of one sample A.
        transient_per_sample: the transient of one sample T.

    Returns:
        The bytes.

    Example:
        >>> activation_bytes(3, 10, 2)
        36
    """
    _check_count("micro_batch", micro_batch)
    _check_count("per_sample", per_sample)
    _check_count("transient_per_sample", transient_per_sample)
    return micro_batch * (per_sample + transient_per_sample)


def max_micro_batch(budget: int, fixed: int, per_sample: int) -> int:
    r"""The largest m with $\mathrm{fixed} + m \cdot \mathrm{per\_sample} \le \mathrm{budget}$.

    Args:
        budget: GPU bytes available.
        fixed: bytes that do not grow with the micro-batch.
        per_sample: bytes per sample (> 0).

    Returns:
        $\max(0, \lfloor (\mathrm{budget} - \mathrm{fixed}) / \mathrm{per\_sample} \rfloor)$;
        0 means not even one sample fits.

    Example:
        >>> max_micro_batch(100, 30, 20), max_micro_batch(10, 30, 20)
        (3, 0)
    """
    _check_count("budget", budget)
    _check_count("fixed", fixed)
    _check_count("per_sample", per_sample, minimum=1)
    return max(0, (budget - fixed) // per_sample)


@dataclass(frozen=True)
class MemoryEstimate:
    """One GPU's memory for one training setup, in bytes.

    Attributes:
        weights: frozen transformer weights on the GPU (W).
        fsdp_gather: FSDP's unsharded working set (G).
        frozen_components: text encoder and VAE weights on the GPU (F).
        lora: the LoRA state (S).
        activations_per_sample: saved activations of one sample (A); for a sampling (rollout)
            forward, the peak bytes alive during it.
        transient_per_sample: one block's temporaries for one sample (T; 0 for a sampling
            forward, whose peak already holds them).
    """

    weights: int
    fsdp_gather: int
    frozen_components: int
    lora: int
    activations_per_sample: int
    transient_per_sample: int

    @property
    def fixed(self) -> int:
        """Bytes that do not grow with the micro-batch: $W + G + F + S$."""
        return self.weights + self.fsdp_gather + self.frozen_components + self.lora

    @property
    def per_sample(self) -> int:
        """Bytes per sample of the micro-batch: $A + T$."""
        return self.activations_per_sample + self.transient_per_sample

    def total(self, micro_batch: int = 1) -> int:
        r"""Peak bytes at micro-batch m: $M(m) = W + G + F + S + m\,(A + T)$."""
        return self.fixed + activation_bytes(
            micro_batch, self.activations_per_sample, self.transient_per_sample
        )

    def max_micro_batch(self, budget: int) -> int:
        """The largest micro-batch whose :meth:`total` fits in ``budget`` bytes."""
        return max_micro_batch(budget, self.fixed, max(1, self.per_sample))
