"""Fused kernels behind the core functions.

Each kernel sits beside the eager reference it must match (``rewardkit/core``), takes the
already-validated tensors and coefficients, and is chosen by the core dispatcher. Triton is
optional: ``HAS_TRITON`` is False and the torch-only paths are used when it cannot be imported.
"""

from rewardkit.kernels.sde_logprob import HAS_TRITON, fused_sde_log_prob

__all__ = ["HAS_TRITON", "fused_sde_log_prob"]
