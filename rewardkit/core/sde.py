r"""SDE sampling steps of flow-matching models and the log-probability of the next latent.

Conventions (docs: The math, Conventions): σ ∈ [0, 1] is the noise level, ``x_σ = (1−σ)·x0 + σ·ε``, the
model predicts the velocity ``v = ε − x0``, a step goes from σ to σ' < σ with ``dt = σ' − σ``.

Every dynamics here is **linear in x and v** with per-sample coefficients and adds Gaussian
noise of std ``s``:

$$
\mu = c_x\,x + c_v\,v,\qquad x' = \mu + s\,\varepsilon,\quad \varepsilon\sim\mathcal N(0, I),
$$

and its log-prob is a per-sample *mean* over all ``D`` non-batch elements,

$$
\ell = \alpha\,\frac{1}{D}\sum_d (x'_d - \mu_d)^2 + \beta .
$$

:func:`sde_coefficients` is the single place where ``(c_x, c_v, s, α, β)`` are computed; the
eager reference below, the chunked CPU kernel and the Triton kernel all consume its output, so
the three paths agree by construction and differ only in summation order.

Numerics policy: coefficients are computed in float64 (Python floats or float64 tensors) and
cast once to the compute dtype, which is float32, or float64 when an input is float64, whatever
the input dtype (bf16/fp16 latents are upcast). The next latent is returned in ``x``'s dtype and
the log-prob is evaluated on that returned (possibly rounded) tensor, so recomputing it in
training from the stored tensors reproduces it exactly (docs: SDE sampling, *The log-prob convention*).
"""

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, NamedTuple, get_args

import torch
from torch import Tensor

from rewardkit.core._checks import check_float_tensor, check_nonnegative, compute_dtype
from rewardkit.kernels.sde_logprob import HAS_TRITON, TRITON_INTERPRETED, fused_sde_log_prob

__all__ = [
    "BACKENDS",
    "KINDS",
    "Backend",
    "Kind",
    "SDECoefficients",
    "SDEConfig",
    "SDELogProb",
    "SDEStep",
    "sde_coefficients",
    "sde_log_prob",
    "sde_step",
]

Kind = Literal["flow_sde", "dance_sde", "cps", "ode"]
Backend = Literal["auto", "triton", "cpu_fused", "compiled", "eager"]
KINDS: tuple[str, ...] = get_args(Kind)
BACKENDS: tuple[str, ...] = get_args(Backend)

Scalar = float | Tensor

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class SDECoefficients(NamedTuple):
    """Coefficients of one SDE step, ``μ = c_x·x + c_v·v``, ``ℓ = α·mean(r²) + β``.

    Each field is a Python float (all sigmas given as floats) or a float64 tensor of shape
    ``()`` or ``(B,)`` (some sigma given as a tensor).

    Attributes:
        c_x: coefficient of the latent x in the mean.
        c_v: coefficient of the velocity v in the mean.
        std: noise std s of the step (0 for a deterministic step).
        alpha: factor of the mean squared residual in the log-prob, ``−1/(2s²)`` or ``−1``.
        beta: constant of the log-prob, ``−log s − ½ log 2π`` or ``0``.
    """

    c_x: Scalar
    c_v: Scalar
    std: Scalar
    alpha: Scalar
    beta: Scalar


class SDEStep(NamedTuple):
    r"""Result of [`sde_step`][rewardkit.sde_step] / [`SDEConfig.step`][rewardkit.SDEConfig.step].

    Attributes:
        next: `(B, ...)` next latent x', in x's dtype.
        log_prob: `(B,)` log-prob of ``next``: mean over non-batch dims, compute dtype.
        mean: `(B, ...)` mean μ of the step, compute dtype.
        noise_std: `(B,)` std of the noise added in this step, $s = \sigma_t\sqrt{|\Delta t|}$.
        sigma_t: `(B,)` the diffusion coefficient $\sigma_t = s/\sqrt{|\Delta t|}$, what the
            x- and v-based KL surrogates divide by (0 for a deterministic step).
    """

    next: Tensor
    log_prob: Tensor
    mean: Tensor
    noise_std: Tensor
    sigma_t: Tensor

    @property
    def std(self) -> Tensor:
        """Deprecated name of ``noise_std`` (it is *not* the σ_t the KL functions take)."""
        warnings.warn(
            "SDEStep.std is renamed SDEStep.noise_std (σ_t·√|Δt|); the KL surrogates take "
            "SDEStep.sigma_t. The old name goes away in rewardkit 0.3.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.noise_std


@dataclass(frozen=True, eq=False)
class SDELogProb:
    r"""Training-side evaluation of one stored step: the log-prob and what the KL needs.

    Returned by [`SDEConfig.log_prob`][rewardkit.SDEConfig.log_prob]. Pass two of them (the
    trained policy's and the reference policy's, same step) straight to
    [`kl_x_based`][rewardkit.kl_x_based], [`kl_v_based`][rewardkit.kl_v_based] or
    [`kl_gaussian`][rewardkit.kl_gaussian]: no hand-built mean or σ_t.

    Attributes:
        log_prob: `(B,)` log-prob of the stored next latent (carries the gradient).
        x: `(B, ...)` the current latent the step started from.
        velocity: `(B, ...)` the velocity the log-prob was computed with.
        mean_coefficients: `(2, B)` $(c_x, c_v)$ of the step mean $\mu = c_x x + c_v v$.
        noise_std: `(B,)` $s = \sigma_t\sqrt{|\Delta t|}$.
        sigma_t: `(B,)` $\sigma_t$ (without $\sqrt{|\Delta t|}$).
    """

    log_prob: Tensor
    x: Tensor
    velocity: Tensor
    mean_coefficients: Tensor
    noise_std: Tensor
    sigma_t: Tensor

    @cached_property
    def mean(self) -> Tensor:
        r"""`(B, ...)` step mean $\mu = c_x x + c_v v$ in the compute dtype (computed on first use)."""
        col = (-1,) + (1,) * (self.x.ndim - 1)
        dtype = self.mean_coefficients.dtype
        c_x, c_v = self.mean_coefficients[0].view(col), self.mean_coefficients[1].view(col)
        return c_x * self.x.to(dtype) + c_v * self.velocity.to(dtype)


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------


def _check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return str(kind)


def _check_backend(backend: object) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return str(backend)


def _values_checkable(t: Tensor) -> bool:
    # Reading a device tensor's values would sync with the host, and torch.compile cannot
    # branch on them; such tensors are shape-checked only.
    return t.device.type == "cpu" and not torch.compiler.is_compiling()


def _check_sigma_arg(name: str, value: object) -> Scalar:
    if isinstance(value, Tensor):
        check_float_tensor(name, value)
        if value.ndim > 1:
            raise ValueError(
                f"{name} must be a float, a 0-d tensor or a (B,) tensor of per-sample values, "
                f"got shape {tuple(value.shape)}"
            )
        if _values_checkable(value) and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} must be finite, got {value.tolist()}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def _violates(value: Scalar, bad: Callable[[Any], Any]) -> bool:
    """Whether ``bad(value)`` holds (for any element); unreadable device tensors pass."""
    if isinstance(value, Tensor):
        return _values_checkable(value) and bool(bad(value).any())
    return bool(bad(value))


def _show(value: Scalar) -> object:
    return value.tolist() if isinstance(value, Tensor) else value


def _check_sigmas(
    sigma: Scalar, sigma_next: Scalar, sigma_max: Scalar | None, *, needs_sigma_max: bool
) -> None:
    """Value checks (floats and CPU tensors): 0 < σ ≤ 1, 0 ≤ σ' < σ, 0 < σ_max < 1."""
    if _violates(sigma, lambda s: (s <= 0) | (s > 1)):
        raise ValueError(f"sigma must lie in (0, 1] (1 = pure noise), got {_show(sigma)}")
    if _violates(sigma_next, lambda s: s < 0):
        raise ValueError(f"sigma_next must be >= 0, got {_show(sigma_next)}")
    readable = all(not isinstance(v, Tensor) or _values_checkable(v) for v in (sigma, sigma_next))
    if readable and bool(torch.as_tensor(sigma_next >= sigma).any()):
        raise ValueError(
            f"sigma_next must be < sigma (a step goes towards the data, dt = sigma_next − sigma "
            f"< 0), got sigma={_show(sigma)}, sigma_next={_show(sigma_next)}"
        )
    if sigma_max is not None:
        if _violates(sigma_max, lambda s: (s <= 0) | (s >= 1)):
            raise ValueError(
                f"sigma_max must lie in (0, 1) (the schedule's second value σ_1), got {_show(sigma_max)}"
            )
    elif needs_sigma_max and _violates(sigma, lambda s: s >= 1):
        raise ValueError(
            "flow_sde at sigma == 1 divides by 1 − sigma; pass sigma_max (the second schedule "
            "value σ_1, e.g. sigma_max=float(sigmas[1])), which replaces sigma in that "
            "denominator as in Flow-GRPO"
        )


def _check_latents(**tensors: Tensor) -> None:
    """All float tensors, ≥ 2-D, non-empty, one shape and one device (first is the reference)."""
    (ref_name, ref), *rest = tensors.items()
    check_float_tensor(ref_name, ref)
    if ref.ndim < 2:
        raise ValueError(
            f"{ref_name} must have a batch dim and at least one more, shape (B, ...), "
            f"got shape {tuple(ref.shape)}; for a single sample use {ref_name}.unsqueeze(0)"
        )
    if ref.numel() == 0:
        raise ValueError(f"{ref_name} must not be empty, got shape {tuple(ref.shape)}")
    for name, t in rest:
        check_float_tensor(name, t)
        if t.shape != ref.shape:
            raise ValueError(
                f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(t.shape)}"
            )
        if t.device != ref.device:
            raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}")


# ----------------------------------------------------------------------------------------------
# coefficients: the one formula every path uses
# ----------------------------------------------------------------------------------------------


def _sqrt(v: Scalar) -> Scalar:
    return torch.sqrt(v) if isinstance(v, Tensor) else math.sqrt(v)


def _as_f64(v: Scalar | None) -> Scalar | None:
    return v.to(torch.float64) if isinstance(v, Tensor) else v


def _log_density_terms(std: Scalar, *, gaussian: bool) -> tuple[Scalar, Scalar]:
    """(α, β) of ``ℓ = α·mean(r²) + β``; the ODE surrogate (−1, 0) when s = 0 or not Gaussian."""
    if not gaussian:
        return -1.0, 0.0
    if isinstance(std, Tensor):
        positive = std > 0
        safe = torch.where(positive, std, torch.ones_like(std))  # avoid 1/0 in the unused branch
        alpha = torch.where(positive, -0.5 / safe.square(), -torch.ones_like(std))
        beta = torch.where(positive, -torch.log(safe) - _LOG_SQRT_2PI, torch.zeros_like(std))
        return alpha, beta
    if std > 0:
        return -0.5 / (std * std), -math.log(std) - _LOG_SQRT_2PI
    return -1.0, 0.0


def sde_coefficients(
    sigma: Scalar,
    sigma_next: Scalar,
    *,
    kind: Kind = "flow_sde",
    noise_level: float | None = None,
    sigma_max: Scalar | None = None,
) -> SDECoefficients:
    r"""Mean coefficients, noise std and log-prob constants of one SDE step.

    With $dt = \sigma' - \sigma < 0$ and noise level $a$:

    * ``"flow_sde"`` (Flow-GRPO): $\sigma_t = a\sqrt{\sigma/(1-\tilde\sigma)}$ with
      $\tilde\sigma = \sigma$, or $\sigma_{\max}$ at $\sigma = 1$;
      $c_x = 1 + \frac{\sigma_t^2\,dt}{2\sigma}$,
      $c_v = \big(1 + \frac{\sigma_t^2(1-\sigma)}{2\sigma}\big)dt$, $s = \sigma_t\sqrt{-dt}$.
    * ``"dance_sde"`` (DanceGRPO): the same with $\sigma_t = a$: $s = a\sqrt{-dt}$.
    * ``"cps"`` (coefficients-preserving): $s = \sigma'\sin(a\pi/2)$,
      $\mu = (1-\sigma')\hat x_0 + \sqrt{\sigma'^2 - s^2}\,\hat x_1$ with
      $\hat x_0 = x - \sigma v$, $\hat x_1 = x + (1-\sigma)v$, so
      $c_x = 1 - \sigma' + \sqrt{\sigma'^2 - s^2}$,
      $c_v = -\sigma(1-\sigma') + (1-\sigma)\sqrt{\sigma'^2 - s^2}$.
    * ``"ode"``: the Euler step, $c_x = 1$, $c_v = dt$, $s = 0$.

    Log-prob constants: $\alpha = -1/(2s^2)$, $\beta = -\log s - \tfrac12\log 2\pi$ for the
    Gaussian kinds (flow_sde, dance_sde) when $s > 0$; $\alpha = -1$, $\beta = 0$ for cps and
    ode (their reference "log-prob" is $-\mathrm{mean}(r^2)$), **and** for a Gaussian kind with
    $s = 0$ (noise level 0), where the density is degenerate: the step is then the
    deterministic Euler step and its log-prob the same finite surrogate as ``"ode"``.

    Args:
        sigma: current noise level σ ∈ (0, 1]; float, 0-d or `(B,)` tensor.
        sigma_next: next noise level σ' ∈ [0, σ); float, 0-d or `(B,)` tensor.
        kind: one of ``"flow_sde"``, ``"dance_sde"``, ``"cps"``, ``"ode"``.
        noise_level: a ≥ 0 (≤ 1 for cps); ignored by ``"ode"`` (not given: 1.0 with a
            ``FutureWarning``).
        sigma_max: the schedule's σ_1 ∈ (0, 1), used by flow_sde in place of σ = 1 in the
            denominator $1-\tilde\sigma$; required there when σ = 1 and a > 0.

    Returns:
        :class:`SDECoefficients` of Python floats (all sigmas floats) or float64 tensors.
        Sigma tensors on a non-CPU device are shape-checked only (value checks would sync).

    Example:
        >>> from rewardkit.core.schedules import qwen_image_sigmas
        >>> s = qwen_image_sigmas(10, 1024)  # Qwen 512², 10 steps
        >>> c = sde_coefficients(float(s[1]), float(s[2]), noise_level=1.0)  # step 1
        >>> round(c.c_x, 4), round(c.c_v, 4), round(c.std, 3)
        (0.4546, -0.1162, 1.007)

    References:
        Flow-GRPO (Liu et al., 2025, arXiv:2505.05470), Eq. for the SDE sampler;
        DanceGRPO (Xue et al., 2025, arXiv:2505.07818); Coefficients-Preserving Sampling
        (Wang & Yu, 2025, arXiv:2509.05952); Flow-Factory
        ``scheduler/flow_match_euler_discrete.py::FlowMatchEulerDiscreteSDEScheduler.step``;
        docs: SDE sampling and the fused log-prob
    """
    kind_name = _check_kind(kind)
    a = check_nonnegative("noise_level", _noise_level_or_default(noise_level, kind_name, "sde_coefficients"))
    if kind_name == "cps" and a > 1:
        raise ValueError(f"noise_level for cps is the angle fraction a ∈ [0, 1], got {a}")
    s = _as_f64(_check_sigma_arg("sigma", sigma))
    sn = _as_f64(_check_sigma_arg("sigma_next", sigma_next))
    smax = None if sigma_max is None else _as_f64(_check_sigma_arg("sigma_max", sigma_max))
    assert s is not None and sn is not None  # narrowing for the type checker
    if isinstance(s, Tensor) and isinstance(sn, Tensor) and s.ndim == 1 == sn.ndim and s.shape != sn.shape:
        raise ValueError(
            f"sigma {tuple(s.shape)} and sigma_next {tuple(sn.shape)} must be 0-d or (B,) with the same B"
        )
    _check_sigmas(s, sn, smax, needs_sigma_max=kind_name == "flow_sde" and a > 0)

    dt = sn - s
    if kind_name in ("flow_sde", "dance_sde"):
        if kind_name == "dance_sde":
            var_t: Scalar = a * a
        elif a == 0:
            var_t = 0.0  # σ_t = 0: the Euler step, and σ_max is not needed at σ = 1
        else:
            s_tilde = s
            if smax is not None:
                s_tilde = torch.where(s >= 1, smax, s) if isinstance(s, Tensor) else (smax if s >= 1 else s)
            var_t = a * a * s / (1 - s_tilde)  # σ_t²
        c_x: Scalar = 1 + var_t * dt / (2 * s)
        c_v: Scalar = (1 + var_t * (1 - s) / (2 * s)) * dt
        std = _sqrt(var_t * -dt)
        alpha, beta = _log_density_terms(std, gaussian=True)
    elif kind_name == "cps":
        std = sn * math.sin(a * math.pi / 2)
        diff = sn * sn - std * std
        # sqrt(σ'² − s²) = σ'·cos(aπ/2) ≥ 0; clamp the rounding residue at a = 1.
        root = torch.sqrt(diff.clamp(min=0.0)) if isinstance(diff, Tensor) else math.sqrt(max(diff, 0.0))
        c_x = 1 - sn + root
        c_v = -s * (1 - sn) + (1 - s) * root
        alpha, beta = _log_density_terms(std, gaussian=False)
    else:  # ode
        c_x, c_v, std = 1.0, dt, 0.0
        alpha, beta = _log_density_terms(std, gaussian=False)

    fields: tuple[Scalar, ...] = (c_x, c_v, std, alpha, beta)
    if any(isinstance(f, Tensor) for f in fields):
        shape = max((f.shape for f in fields if isinstance(f, Tensor)), key=len)  # () or (B,)
        device = next(f.device for f in fields if isinstance(f, Tensor))
        fields = tuple(_full_f64(f, shape, device) for f in fields)
    return SDECoefficients(*fields)


def _full_f64(value: Scalar, shape: torch.Size | tuple[int, ...], device: torch.device) -> Tensor:
    """``value`` as a float64 tensor broadcast to ``shape``; a float becomes a fill, not a copy."""
    if isinstance(value, Tensor):
        return value.to(torch.float64).expand(shape)
    # torch.full launches a fill kernel; torch.as_tensor(float, device="cuda") would copy from
    # the host and synchronise.
    return torch.full(shape, value, dtype=torch.float64, device=device)


def _per_sample(values: tuple[Scalar, ...], batch: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Pack coefficient values into a `(K, B')` tensor on ``device`` (B' = 1 if shared)."""
    if not any(isinstance(v, Tensor) for v in values):
        # One tiny host→device copy, asynchronous (no sync, unlike K fill kernels + a stack).
        packed = torch.tensor(values, dtype=dtype).view(len(values), 1)
        return packed.to(device, non_blocking=True)
    home = next(v.device for v in values if isinstance(v, Tensor))
    tensors = [v.to(torch.float64) if isinstance(v, Tensor) else _full_f64(v, (), home) for v in values]
    width = max(t.numel() for t in tensors)
    if width not in (1, batch):
        raise ValueError(
            f"per-sample sigmas must have one value per sample: got {width} values for a batch of {batch}"
        )
    stacked = torch.stack([t.reshape(-1).expand(width) for t in tensors])
    return stacked.to(device=device, dtype=dtype, non_blocking=True).contiguous()


def _coefficient_tensor(coeffs: SDECoefficients, x: Tensor, dtype: torch.dtype) -> Tensor:
    """`(4, B')` rows ``(c_x, c_v, α, β)`` in the compute dtype on x's device."""
    return _per_sample((coeffs.c_x, coeffs.c_v, coeffs.alpha, coeffs.beta), x.shape[0], dtype, x.device)


def _noise_rows(
    coeffs: SDECoefficients, sigma: Scalar, sigma_next: Scalar, x: Tensor, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    r"""`(B,)` noise std $s$ and diffusion coefficient $\sigma_t = s/\sqrt{\sigma - \sigma'}$."""
    gap = _as_f64(sigma) - _as_f64(sigma_next)  # type: ignore[operator]
    sigma_t = coeffs.std / _sqrt(gap)
    rows = _per_sample((coeffs.std, sigma_t), x.shape[0], dtype, x.device)
    batch = x.shape[0]
    return rows[0].expand(batch).contiguous(), rows[1].expand(batch).contiguous()


def _noise_level_or_default(noise_level: float | None, kind: str, caller: str) -> float:
    """The noise level, or DyRef's 1.0 with a warning: a silent default misleads ports."""
    if noise_level is not None:
        return noise_level
    # Not while torch.compile traces: warnings.warn would break a fullgraph compile.
    if kind != "ode" and not torch.compiler.is_compiling():
        warnings.warn(
            f"{caller}: noise_level not given, using 1.0 (DyRef's); Flow-GRPO uses 0.7. Pass "
            "noise_level= to both the rollout and the training call, or build one "
            "rewardkit.SDEConfig for both. The default goes away in rewardkit 0.3.",
            FutureWarning,
            stacklevel=3,
        )
    return 1.0


# ----------------------------------------------------------------------------------------------
# log-prob: eager reference and dispatch
# ----------------------------------------------------------------------------------------------


def _eager_log_prob(x_next: Tensor, x: Tensor, velocity: Tensor, coef: Tensor) -> Tensor:
    """The specification: ``α·mean_d((x' − c_x x − c_v v)²) + β`` with plain torch ops."""
    dtype = coef.dtype
    col = (-1,) + (1,) * (x.ndim - 1)
    mean = coef[0].view(col) * x.to(dtype) + coef[1].view(col) * velocity.to(dtype)
    residual = x_next.detach().to(dtype) - mean
    msq = residual.square().mean(dim=tuple(range(1, x.ndim)))
    return coef[2] * msq + coef[3]


def _resolve_backend(backend: str, x: Tensor) -> str:
    if backend == "eager":
        return "eager"
    if backend == "cpu_fused":
        return "chunked"
    if backend == "compiled":
        return "compiled"
    if backend == "auto":
        return "triton" if x.is_cuda and HAS_TRITON else "chunked"
    # backend == "triton"
    if not HAS_TRITON:
        raise RuntimeError(
            "backend='triton' needs the triton package, which could not be imported; "
            "use backend='auto' (it falls back to 'cpu_fused') or install triton"
        )
    if not x.is_cuda and not (x.device.type == "cpu" and TRITON_INTERPRETED):
        raise ValueError(
            f"backend='triton' runs on CUDA tensors (or CPU tensors under TRITON_INTERPRET=1 set "
            f"before importing rewardkit), got tensors on {x.device}; use backend='cpu_fused'"
        )
    return "triton"


def _log_prob(x_next: Tensor, x: Tensor, velocity: Tensor, coef: Tensor, backend: str) -> Tensor:
    impl = _resolve_backend(backend, x)
    if impl == "eager":
        return _eager_log_prob(x_next, x, velocity, coef)
    return fused_sde_log_prob(x_next, x, velocity, coef, impl=impl)  # type: ignore[arg-type]


def sde_log_prob(
    x_next: Tensor,
    x: Tensor,
    velocity: Tensor,
    sigma: Scalar,
    sigma_next: Scalar,
    *,
    kind: Kind = "flow_sde",
    noise_level: float | None = None,
    sigma_max: Scalar | None = None,
    backend: Backend = "auto",
) -> Tensor:
    r"""Per-sample log-prob of a given next latent under the SDE step, fused by default.

    $$
    \ell_b = \alpha_b\,\frac{1}{D}\sum_{d=1}^{D}\big(x'_{bd} - c_{x,b}\,x_{bd}
    - c_{v,b}\,v_{bd}\big)^2 + \beta_b,
    $$

    with $(c_x, c_v, \alpha, \beta)$ from :func:`sde_coefficients` and $D$ the number of
    elements per sample. For the Gaussian kinds this is the mean over elements of
    $\log\mathcal N(x'; \mu, s^2)$; for cps/ode (and s = 0) it is $-\mathrm{mean}(r^2)$.
    Gradients flow to ``velocity`` (and to ``x`` if it requires grad); ``x_next`` and the
    sigmas are treated as constants. The backward is the closed form
    $\partial\ell_b/\partial v_{bd} = -2\alpha_b c_{v,b} r_{bd}/D$.

    Backends: ``"triton"`` (CUDA kernel: one read of the inputs forward, one backward; bf16/
    fp16 inputs accumulated in fp32), ``"cpu_fused"`` (torch-only chunked kernel, any device, no
    full-size temporary), ``"compiled"`` (the same formulas through ``torch.compile``; opt-in,
    fastest on CPU, compiles on first use), ``"eager"`` (the plain-torch specification) and
    ``"auto"`` (triton for CUDA tensors when triton imports, else cpu_fused). All give the same values up to
    summation order; one backend on one device is deterministic, so the log-prob recomputed
    from a rollout's stored tensors equals the rollout's exactly (ratio 1).

    Args:
        x_next: `(B, ...)` next latent x' (e.g. ``sde_step(...).next`` as stored).
        x: `(B, ...)` current latent.
        velocity: `(B, ...)` predicted velocity v (requires grad in training).
        sigma: σ ∈ (0, 1]; float, 0-d or `(B,)` tensor.
        sigma_next: σ' ∈ [0, σ); float, 0-d or `(B,)` tensor.
        kind: ``"flow_sde"`` (default), ``"dance_sde"``, ``"cps"`` or ``"ode"``.
        noise_level: a ≥ 0, as in the rollout (not given: 1.0 with a ``FutureWarning``).
        sigma_max: σ_1 of the schedule, needed by flow_sde at σ = 1.
        backend: ``"auto"``, ``"triton"``, ``"cpu_fused"``, ``"compiled"`` or ``"eager"``.

    Returns:
        `(B,)` log-probs in float32 (float64 if an input is float64).

    Example:
        >>> x, v = torch.zeros(2, 4, 3), torch.ones(2, 4, 3)
        >>> step = sde_step(x, v, 0.8, 0.7, noise_level=0.7, generator=torch.Generator().manual_seed(0))
        >>> bool(torch.equal(sde_log_prob(step.next, x, v, 0.8, 0.7, noise_level=0.7), step.log_prob))
        True

    References:
        Flow-GRPO (arXiv:2505.05470); Flow-Factory
        ``scheduler/flow_match_euler_discrete.py``; docs: SDE sampling and the fused log-prob
    """
    backend_name = _check_backend(backend)
    _check_latents(x=x, velocity=velocity, x_next=x_next)
    a = _noise_level_or_default(noise_level, kind, "sde_log_prob")
    coeffs = sde_coefficients(sigma, sigma_next, kind=kind, noise_level=a, sigma_max=sigma_max)
    return _stored_step_log_prob(x_next, x, velocity, coeffs, backend_name)[0]


def _stored_step_log_prob(
    x_next: Tensor, x: Tensor, velocity: Tensor, coeffs: SDECoefficients, backend: str
) -> tuple[Tensor, Tensor]:
    """The log-prob of a stored step and its `(4, B')` coefficient rows (checked latents)."""
    coef = _coefficient_tensor(coeffs, x, compute_dtype(x_next, x, velocity))
    return _log_prob(x_next, x, velocity, coef, backend), coef


def sde_step(
    x: Tensor,
    velocity: Tensor,
    sigma: Scalar,
    sigma_next: Scalar,
    *,
    kind: Kind = "flow_sde",
    noise_level: float | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    sigma_max: Scalar | None = None,
    backend: Backend = "auto",
) -> SDEStep:
    r"""One stochastic (or deterministic) sampling step from σ to σ', with its log-prob.

    $$
    \mu = c_x\,x + c_v\,v,\qquad x' = \mu + s\,\varepsilon,\qquad
    \ell = \alpha\,\mathrm{mean}_d\big((x' - \mu)^2\big) + \beta,
    $$

    where $(c_x, c_v, s, \alpha, \beta)$ come from :func:`sde_coefficients` for ``kind``
    (Flow-SDE by default: the discretisation of
    $dx = [v + \frac{\sigma_t^2}{2\sigma}(x + (1-\sigma)v)]dt + \sigma_t\,dW$), $x$ is the
    latent at σ, $v$ the velocity (noise minus data) and $\varepsilon \sim \mathcal N(0, I)$.
    With ``kind="ode"`` or ``noise_level=0`` the step is exactly the Euler step
    $x + v\,dt$ and no noise is drawn.

    The log-prob is computed by :func:`sde_log_prob` (same ``backend``) on the *returned*
    ``next`` (rounded to x's dtype), so training recomputes it bit for bit from the stored
    tensors.

    Args:
        x: `(B, ...)` latent at σ, e.g. `(B, L, C)` packed tokens.
        velocity: `(B, ...)` model velocity at (x, σ), after guidance.
        sigma: σ ∈ (0, 1]; float, 0-d or `(B,)` tensor.
        sigma_next: σ' ∈ [0, σ); float, 0-d or `(B,)` tensor.
        kind: ``"flow_sde"`` (default), ``"dance_sde"``, ``"cps"`` or ``"ode"``.
        noise_level: a ≥ 0 (≤ 1 for cps); 0 makes every kind deterministic. Not given:
            1.0 (DyRef) with a ``FutureWarning``; Flow-GRPO uses 0.7. Prefer one
            [`SDEConfig`][rewardkit.SDEConfig] for rollout and training.
        noise: `(B, ...)` standard normal ε to use (mutually exclusive with ``generator``).
        generator: draws ε on its device (mutually exclusive with ``noise``). One of the two
            is required for a stochastic step: core functions never touch the global RNG.
        sigma_max: σ_1 of the schedule, needed by flow_sde at σ = 1 (the first step).
        backend: log-prob backend, as in :func:`sde_log_prob`.

    Returns:
        :class:`SDEStep` ``(next, log_prob, mean, noise_std, sigma_t)``: `(B, ...)` in x's
        dtype, then `(B,)`, `(B, ...)`, `(B,)` and `(B,)` in the compute dtype (float32, or
        float64 for float64 inputs).

    Example:
        >>> from rewardkit.core.schedules import qwen_image_sigmas
        >>> sigmas = qwen_image_sigmas(10, 1024)
        >>> x, v = torch.randn(2, 1024, 64), torch.randn(2, 1024, 64)
        >>> g = torch.Generator().manual_seed(0)
        >>> out = sde_step(x, v, float(sigmas[1]), float(sigmas[2]), noise_level=1.0, generator=g)
        >>> out.next.shape, out.log_prob.shape
        (torch.Size([2, 1024, 64]), torch.Size([2]))

    References:
        Flow-GRPO (Liu et al., 2025, arXiv:2505.05470); DanceGRPO (arXiv:2505.07818);
        CPS (arXiv:2509.05952); Flow-Factory
        ``scheduler/flow_match_euler_discrete.py::FlowMatchEulerDiscreteSDEScheduler.step``;
        docs: SDE sampling and the fused log-prob
    """
    backend_name = _check_backend(backend)
    _check_latents(x=x, velocity=velocity)
    if noise is not None and generator is not None:
        raise ValueError("pass either noise= or generator=, not both")
    noise_level = _noise_level_or_default(noise_level, kind, "sde_step")
    coeffs = sde_coefficients(sigma, sigma_next, kind=kind, noise_level=noise_level, sigma_max=sigma_max)
    dtype = compute_dtype(x, velocity)
    coef = _coefficient_tensor(coeffs, x, dtype)
    std, sigma_t = _noise_rows(coeffs, sigma, sigma_next, x, dtype)
    col = (-1,) + (1,) * (x.ndim - 1)
    mean = coef[0].view(col) * x.to(dtype) + coef[1].view(col) * velocity.to(dtype)
    if kind == "ode" or noise_level == 0:
        next_c = mean  # deterministic: exactly x + v·dt, no noise drawn
    else:
        if noise is not None:
            _check_latents(x=x, noise=noise)
            eps = noise.to(dtype)
        elif generator is not None:
            eps = torch.randn(x.shape, generator=generator, dtype=dtype, device=generator.device)
            eps = eps.to(x.device)
        else:
            raise ValueError(
                f"a stochastic step (kind={kind!r}, noise_level={noise_level}) needs noise= or "
                f"generator= (core functions never draw from the global RNG)"
            )
        next_c = mean + std.reshape(col) * eps
    x_next = next_c.to(x.dtype)
    log_prob = _log_prob(x_next, x, velocity, coef, backend_name)
    return SDEStep(x_next, log_prob, mean, std, sigma_t)


# ----------------------------------------------------------------------------------------------
# one description for rollout and training
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SDEConfig:
    r"""The SDE of a run, shared by the rollout and the training call so they cannot disagree.

    Build one and use its [`step`][rewardkit.SDEConfig.step] while sampling and its
    [`log_prob`][rewardkit.SDEConfig.log_prob] while training: the kind, noise level, σ_max
    and backend are then the same in both calls by construction (a training call at another
    noise level makes every ratio ≈ 0.7 and clips everything, silently). Both methods take the
    latents by keyword only, so ``x`` and ``x_next`` cannot be swapped.

    Attributes:
        kind: ``"flow_sde"`` (Flow-GRPO, DyRef), ``"dance_sde"``, ``"cps"`` or ``"ode"``.
        noise_level: the noise level $a$ (required: DyRef uses 1.0, Flow-GRPO 0.7; see
            [`dyref`][rewardkit.SDEConfig.dyref] and [`flow_grpo`][rewardkit.SDEConfig.flow_grpo]).
        sigma_max: the schedule's σ_1, which flow_sde uses in place of σ = 1 at the first step.
        backend: log-prob backend; one backend for both calls keeps the ratio exactly 1.

    Example:
        >>> import torch, rewardkit
        >>> sde = rewardkit.SDEConfig.flow_grpo()
        >>> x, v = torch.zeros(2, 4, 3), torch.ones(2, 4, 3)
        >>> g = torch.Generator().manual_seed(0)
        >>> step = sde.step(x=x, velocity=v, sigma=0.8, sigma_next=0.7, generator=g)
        >>> new = sde.log_prob(x_next=step.next, x=x, velocity=v, sigma=0.8, sigma_next=0.7)
        >>> bool(torch.equal(new.log_prob, step.log_prob)), float(rewardkit.kl_x_based(new, new).max())
        (True, 0.0)
    """

    kind: Kind
    noise_level: float
    sigma_max: float | None = None
    backend: Backend = "auto"

    def __post_init__(self) -> None:
        _check_kind(self.kind)
        _check_backend(self.backend)
        if isinstance(self.noise_level, bool) or not isinstance(self.noise_level, int | float):
            raise TypeError(f"noise_level must be a number, got {type(self.noise_level).__name__}")
        check_nonnegative("noise_level", float(self.noise_level))
        if self.kind == "cps" and self.noise_level > 1:
            raise ValueError(f"noise_level for cps is the angle fraction a ∈ [0, 1], got {self.noise_level}")
        if self.sigma_max is not None and not 0 < self.sigma_max < 1:
            raise ValueError(f"sigma_max must lie in (0, 1) (the schedule's σ_1), got {self.sigma_max}")

    @classmethod
    def dyref(cls, sigma_max: float | None = None) -> "SDEConfig":
        """DyRef's rollout: Flow-SDE at noise level 1.0."""
        return cls("flow_sde", 1.0, sigma_max)

    @classmethod
    def flow_grpo(cls, sigma_max: float | None = None) -> "SDEConfig":
        """Flow-GRPO's default: Flow-SDE at noise level 0.7 (``sample.noise_level``)."""
        return cls("flow_sde", 0.7, sigma_max)

    def coefficients(self, sigma: Scalar, sigma_next: Scalar) -> SDECoefficients:
        """[`sde_coefficients`][rewardkit.core.sde.sde_coefficients] of one step under this SDE."""
        return sde_coefficients(
            sigma, sigma_next, kind=self.kind, noise_level=self.noise_level, sigma_max=self.sigma_max
        )

    def step(
        self,
        *,
        x: Tensor,
        velocity: Tensor,
        sigma: Scalar,
        sigma_next: Scalar,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SDEStep:
        """One rollout step from σ to σ'; [`sde_step`][rewardkit.sde_step] with this SDE."""
        return sde_step(
            x,
            velocity,
            sigma,
            sigma_next,
            kind=self.kind,
            noise_level=self.noise_level,
            noise=noise,
            generator=generator,
            sigma_max=self.sigma_max,
            backend=self.backend,
        )

    def log_prob(
        self, *, x_next: Tensor, x: Tensor, velocity: Tensor, sigma: Scalar, sigma_next: Scalar
    ) -> SDELogProb:
        r"""The training-side log-prob of a stored step, with the mean and σ_t the KL needs.

        Args:
            x_next: `(B, ...)` the stored next latent (``step.next`` of the rollout).
            x: `(B, ...)` the stored current latent.
            velocity: `(B, ...)` the velocity of the policy being trained (carries grad).
            sigma: σ of the step, as in the rollout.
            sigma_next: σ' of the step.

        Returns:
            An [`SDELogProb`][rewardkit.SDELogProb]; its ``log_prob`` equals the rollout's
            bit for bit when the policy has not changed.
        """
        _check_latents(x=x, velocity=velocity, x_next=x_next)
        coeffs = self.coefficients(sigma, sigma_next)
        log_prob, coef = _stored_step_log_prob(x_next, x, velocity, coeffs, self.backend)
        noise_std, sigma_t = _noise_rows(coeffs, sigma, sigma_next, x, coef.dtype)
        mean_coefficients = coef[:2].expand(2, x.shape[0]).contiguous()
        return SDELogProb(log_prob, x, velocity, mean_coefficients, noise_std, sigma_t)
