"""Argument checks shared by the core functions.

Every check raises a ``ValueError`` or ``TypeError`` that names the argument, states what was
expected and what was received, so a caller can fix the call without reading the source.
"""

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """Dtype to accumulate in: float64 if any input is float64, else float32 (bf16/fp16 upcast)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def check_float_tensor(name: str, value: object, *, ndim: int | None = None) -> Tensor:
    """Return ``value`` if it is a floating-point tensor (of ``ndim`` dims), else raise."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(value.shape)}")
    return value


def check_no_nan(name: str, value: Tensor, *, allow_inf: bool = False) -> None:
    """Raise if ``value`` holds NaN (or infinities unless ``allow_inf``)."""
    bad = torch.isnan(value) if allow_inf else ~torch.isfinite(value)
    if bool(bad.any()):
        count = int(bad.sum())
        what = "NaN" if allow_inf else "NaN or infinite"
        raise ValueError(
            f"{name} contains {count} {what} value(s); expected finite numbers "
            f"(filter or impute them before calling)"
        )


def check_group_ids(group_ids: object, length: int, *, name: str = "group_ids") -> Tensor:
    """Return ``group_ids`` if it is a 1-D integer tensor of ``length`` entries, else raise."""
    if not isinstance(group_ids, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integers, got {type(group_ids).__name__}")
    if group_ids.is_floating_point() or group_ids.is_complex() or group_ids.dtype == torch.bool:
        raise TypeError(
            f"{name} must be an integer tensor (one group label per sample), got dtype "
            f"{group_ids.dtype}; convert with .long()"
        )
    if group_ids.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(group_ids.shape)}")
    if group_ids.shape[0] != length:
        raise ValueError(
            f"{name} has {group_ids.shape[0]} entries but the rewards have {length} samples; "
            f"give one group label per sample"
        )
    return group_ids


def check_nonnegative(name: str, value: float, *, allow_inf: bool = False) -> float:
    """Return ``value`` as a float if it is ≥ 0 (and finite unless ``allow_inf``), else raise."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if math.isnan(value) or value < 0 or (math.isinf(value) and not allow_inf):
        what = "a number >= 0 (inf allowed)" if allow_inf else "a finite number >= 0"
        raise ValueError(f"{name} must be {what}, got {value}")
    return float(value)


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as a float if it is finite and > 0, else raise."""
    check_nonnegative(name, value)
    if value == 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return float(value)


def check_ddof(ddof: object) -> int:
    """Return ``ddof`` if it is 0 or 1 (population or sample standard deviation), else raise."""
    if isinstance(ddof, bool) or not isinstance(ddof, int) or ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 (population std) or 1 (sample std), got {ddof!r}")
    return ddof


def as_range(name: str, value: float | Sequence[float]) -> tuple[float, float]:
    """Turn a scalar ``c`` into ``(-|c|, |c|)`` and check that a pair is ``(lo <= 0 <= hi)``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
        return (-abs(float(value)), abs(float(value)))
    if isinstance(value, Sequence) and len(value) == 2:
        lo, hi = (float(v) for v in value)
        if not (math.isfinite(lo) and math.isfinite(hi)) or not lo <= 0.0 <= hi:
            raise ValueError(
                f"{name} as a pair must satisfy lo <= 0 <= hi with finite values, got {tuple(value)}"
            )
        return (lo, hi)
    raise TypeError(f"{name} must be a number c (meaning (-|c|, |c|)) or a pair (lo, hi), got {value!r}")
