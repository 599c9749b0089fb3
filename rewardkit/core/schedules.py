"""Sigma schedules of flow-matching samplers and the per-epoch SDE window.

Pure functions of ``(num_steps, image_seq_len, ...)``: the rollout and every training forward
recompute the same schedule from the same integers, so nothing about the schedule has to be
stored. No diffusers import; the formulas are on the docs' SDE page (*Sigma schedules*).

Conventions: σ ∈ [0, 1] is the noise level (σ = 1 is pure noise), the schedule is decreasing,
``σ_0 = 1 > σ_1 > … > σ_{N-1} > σ_N = 0`` with the terminal 0 appended, and step ``i`` goes
from ``σ_i`` to ``σ_{i+1}``. Schedules are returned as float64 tensors of ``N + 1`` values;
index them with the step index, or pass ``float(sigmas[i])`` to the SDE step.
"""

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "exponential_shift_sigmas",
    "flux2_empirical_mu",
    "flux2_sigmas",
    "qwen_image_mu",
    "qwen_image_sigmas",
    "sd3_sigmas",
    "sde_window",
    "sigmas_from_scheduler",
]

# Qwen-Image(-Edit-2511) scheduler config: base/max image sequence length and shift.
QWEN_BASE_SEQ_LEN = 256
QWEN_MAX_SEQ_LEN = 8192
QWEN_BASE_SHIFT = 0.5
QWEN_MAX_SHIFT = 0.9
QWEN_SHIFT_TERMINAL = 0.02

# Stable Diffusion 3 / 3.5 scheduler config: static shift, 1000 training timesteps.
SD3_SHIFT = 3.0
SD3_NUM_TRAIN_TIMESTEPS = 1000


def _check_int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def exponential_shift_sigmas(
    num_steps: int,
    mu: float,
    *,
    shift_terminal: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    r"""Exponentially time-shifted sigma schedule with an appended terminal 0.

    $$
    s = \mathrm{linspace}(1, 1/N, N),\qquad
    \sigma_i = \frac{e^{\mu}}{e^{\mu} + (1/s_i - 1)},\quad i = 0 \dots N-1,
    $$
    optionally stretched so that the last non-zero value equals ``shift_terminal`` $\tau$:
    $$
    \sigma_i \leftarrow 1 - (1 - \sigma_i)\,\frac{1 - \tau}{1 - \sigma_{N-1}},
    $$
    and finally $\sigma_N = 0$. Here $N$ is ``num_steps`` and $\mu$ the log-shift (larger
    $\mu$ keeps σ near 1 for longer).

    Args:
        num_steps: number of sampling steps N (≥ 1; ≥ 2 with ``shift_terminal``).
        mu: log-shift μ (any finite number; μ = 0 gives the unshifted linear schedule).
        shift_terminal: if given, the value τ ∈ (0, 1) of the last non-zero sigma.
        dtype: floating dtype of the result (float64 by default, so the schedule is exact to
            double precision; the SDE step casts the coefficients to its compute dtype).

    Returns:
        `(N + 1,)` tensor ``[σ_0 = 1, …, σ_{N-1}, 0]``, strictly decreasing.

    Example:
        >>> exponential_shift_sigmas(4, 0.0)
        tensor([1.0000, 0.7500, 0.5000, 0.2500, 0.0000], dtype=torch.float64)

    References:
        diffusers ``FlowMatchEulerDiscreteScheduler`` (``time_shift_type="exponential"``,
        ``stretch_shift_to_terminal``); docs: SDE sampling and the fused log-prob
    """
    n = _check_int("num_steps", num_steps, minimum=1)
    mu = _check_finite("mu", mu)
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    s = torch.linspace(1.0, 1.0 / n, n, dtype=torch.float64)
    # Written as 1 / (1 + (1/s - 1)·e^{-μ}) so that s = 1 gives exactly σ_0 = 1 (the form
    # e^μ / (e^μ + …) can round to 0.9999999999999999, which breaks the σ = 1 special case).
    sigmas = 1.0 / (1.0 + (1.0 / s - 1.0) * math.exp(-mu))
    if shift_terminal is not None:
        tau = _check_finite("shift_terminal", shift_terminal)
        if not 0.0 < tau < 1.0:
            raise ValueError(f"shift_terminal must lie in (0, 1), got {tau}")
        if n < 2:
            # With one step σ_{N-1} = σ_0 = 1 and the stretch divides by 1 - σ_{N-1} = 0.
            raise ValueError("shift_terminal needs num_steps >= 2 (with one step, σ_0 = 1 is fixed)")
        sigmas = 1.0 - (1.0 - sigmas) * (1.0 - tau) / (1.0 - sigmas[-1])
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(dtype)


def qwen_image_mu(
    image_seq_len: int,
    *,
    base_seq_len: int = QWEN_BASE_SEQ_LEN,
    max_seq_len: int = QWEN_MAX_SEQ_LEN,
    base_shift: float = QWEN_BASE_SHIFT,
    max_shift: float = QWEN_MAX_SHIFT,
) -> float:
    r"""Resolution-dependent log-shift μ, linear in the image sequence length (Qwen-Image).

    $$
    m = \frac{\mu_{\max} - \mu_{\text{base}}}{L_{\max} - L_{\text{base}}},\qquad
    \mu = m\,L + (\mu_{\text{base}} - m\,L_{\text{base}})
    $$
    with $L$ the number of **target** latent tokens (reference-image tokens are not counted).
    The defaults are the Qwen-Image-Edit-2511 scheduler config: the line through
    (256, 0.5) and (8192, 0.9). It is not clamped outside that range.

    Args:
        image_seq_len: L, packed latent tokens of the generated image, e.g. ``(H/16)·(W/16)``.
        base_seq_len: L_base.
        max_seq_len: L_max (> L_base).
        base_shift: μ at L_base.
        max_shift: μ at L_max.

    Returns:
        μ as a Python float.

    Example:
        >>> round(qwen_image_mu(1024), 5)  # 512×512
        0.53871

    References:
        diffusers ``calculate_shift``; docs: SDE sampling and the fused log-prob
    """
    seq = _check_int("image_seq_len", image_seq_len, minimum=1)
    base = _check_int("base_seq_len", base_seq_len, minimum=1)
    top = _check_int("max_seq_len", max_seq_len, minimum=1)
    if top <= base:
        raise ValueError(f"max_seq_len must exceed base_seq_len, got {top} <= {base}")
    lo = _check_finite("base_shift", base_shift)
    hi = _check_finite("max_shift", max_shift)
    m = (hi - lo) / (top - base)
    return seq * m + (lo - base * m)


def flux2_empirical_mu(image_seq_len: int, num_steps: int) -> float:
    r"""FLUX.2's empirical log-shift μ, a function of the sequence length and the step count.

    With $a_1, b_1 = 8.73809524\cdot10^{-5}, 1.89833333$ and
    $a_2, b_2 = 1.6927\cdot10^{-4}, 0.45666666$:
    $$
    \mu = \begin{cases}
      a_2 L + b_2 & L > 4300,\\
      a N + b,\quad a = \frac{m_{200} - m_{10}}{190},\ b = m_{200} - 200a & \text{otherwise,}
    \end{cases}
    $$
    where $m_{200} = a_2 L + b_2$ and $m_{10} = a_1 L + b_1$ are the fitted shifts for 200 and
    10 steps, $L$ the target token count and $N$ the number of steps.

    Args:
        image_seq_len: L, packed latent tokens of the generated image.
        num_steps: N, number of sampling steps.

    Returns:
        μ as a Python float.

    Example:
        >>> round(flux2_empirical_mu(1024, 10), 5)  # 512×512, 10 steps
        1.98781

    References:
        diffusers ``pipeline_flux2.compute_empirical_mu``; docs: SDE sampling and the fused log-prob
    """
    seq = _check_int("image_seq_len", image_seq_len, minimum=1)
    n = _check_int("num_steps", num_steps, minimum=1)
    a1, b1 = 8.73809524e-05, 1.89833333
    a2, b2 = 0.00016927, 0.45666666
    if seq > 4300:
        return a2 * seq + b2
    m_200 = a2 * seq + b2
    m_10 = a1 * seq + b1
    a = (m_200 - m_10) / 190.0
    b = m_200 - 200.0 * a
    return a * n + b


def qwen_image_sigmas(
    num_steps: int, image_seq_len: int, *, shift_terminal: float | None = QWEN_SHIFT_TERMINAL
) -> Tensor:
    """Qwen-Image(-Edit-2511) sampling schedule: μ from :func:`qwen_image_mu`, τ = 0.02.

    Equivalent to ``exponential_shift_sigmas(num_steps, qwen_image_mu(image_seq_len),
    shift_terminal=shift_terminal)``; see that function for the equations.

    Args:
        num_steps: number of sampling steps N (≥ 2 with the default ``shift_terminal``).
        image_seq_len: target latent tokens L (1024 at 512², 4096 at 1024²).
        shift_terminal: last non-zero sigma (the checkpoint config's 0.02), or None.

    Returns:
        `(N + 1,)` float64 schedule ending in 0.

    Example:
        >>> qwen_image_sigmas(10, 1024)[:3]
        tensor([1.0000, 0.9290, 0.8515], dtype=torch.float64)

    References:
        Qwen-Image-Edit-2511 ``scheduler_config.json``; docs: SDE sampling and the fused log-prob
    """
    return exponential_shift_sigmas(num_steps, qwen_image_mu(image_seq_len), shift_terminal=shift_terminal)


def flux2_sigmas(num_steps: int, image_seq_len: int) -> Tensor:
    """FLUX.2 (klein) sampling schedule: μ from :func:`flux2_empirical_mu`, no terminal stretch.

    Equivalent to ``exponential_shift_sigmas(num_steps, flux2_empirical_mu(image_seq_len,
    num_steps))``; see that function for the equations.

    Args:
        num_steps: number of sampling steps N.
        image_seq_len: target latent tokens L (1024 at 512²).

    Returns:
        `(N + 1,)` float64 schedule ending in 0.

    Example:
        >>> flux2_sigmas(10, 1024)[-2:]
        tensor([0.4478, 0.0000], dtype=torch.float64)

    References:
        diffusers ``Flux2Pipeline``; docs: SDE sampling and the fused log-prob
    """
    return exponential_shift_sigmas(num_steps, flux2_empirical_mu(image_seq_len, num_steps))


def _static_shift(s: Tensor, shift: float) -> Tensor:
    # k·s / (1 + (k-1)·s), written as 1 / (1 + (1-s) / (k·s)) so that s = 1 gives exactly 1 for
    # every k (1 + (k-1) can differ from k in the last bit, e.g. k = 0.1).
    return 1.0 / (1.0 + (1.0 - s) / (shift * s))


def sd3_sigmas(num_steps: int, *, shift: float = SD3_SHIFT, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""Stable Diffusion 3 / 3.5 sampling schedule: static shift, applied twice to the endpoint.

    With the static shift $f_k(s) = \frac{k\,s}{1 + (k-1)\,s}$ ($k$ = ``shift``) and
    $T = 1000$ training timesteps:
    $$
    \hat\sigma_{\min} = f_k(1/T),\qquad
    s = \mathrm{linspace}(1, \hat\sigma_{\min}, N),\qquad
    \sigma_i = f_k(s_i),\quad i = 0 \dots N-1,
    $$
    and finally $\sigma_N = 0$. This is what diffusers' ``FlowMatchEulerDiscreteScheduler(shift=3.0)``
    (``use_dynamic_shifting=False``, the SD3 / SD3.5 config) gives after ``set_timesteps(N)``:
    the constructor shifts the training grid $t/T$, $t = T \dots 1$, so its smallest sigma is
    $\hat\sigma_{\min}$, and ``set_timesteps`` spaces $N$ values linearly from 1 down to that
    already-shifted endpoint and shifts them **again**.

    Difference from
    [`exponential_shift_sigmas`][rewardkit.core.schedules.exponential_shift_sigmas]:
    the map is the same ($f_k$ is the exponential shift with $\mu = \ln k$), but the grid is not.
    ``exponential_shift_sigmas(N, math.log(k))`` shifts $\mathrm{linspace}(1, 1/N, N)$ (the grid
    the FLUX / Qwen-Image pipelines pass as ``sigmas=``), whereas SD3 shifts
    $\mathrm{linspace}(1, f_k(10^{-3}), N)$. With $k = 3$ the last non-zero sigma is
    $f_3(f_3(10^{-3})) \approx 0.00893$ instead of $f_3(1/N)$, and every interior value is lower,
    e.g. $\sigma_1 = 0.9601$ instead of $0.9643$ at $N = 10$.

    Args:
        num_steps: number of sampling steps N (≥ 1; the diffusers SD3 pipeline defaults to 28).
        shift: static shift k > 0 (the SD3 / SD3.5 scheduler config's 3.0; 1.0 is unshifted).
        dtype: floating dtype of the result (float64 by default, computed in float64 either way).

    Returns:
        `(N + 1,)` tensor ``[σ_0 = 1, …, σ_{N-1}, 0]``, strictly decreasing.

    Example:
        >>> sd3_sigmas(10)[:3]
        tensor([1.0000, 0.9601, 0.9133], dtype=torch.float64)
        >>> round(float(exponential_shift_sigmas(10, math.log(3.0))[1]), 4)  # same map, other grid
        0.9643

    References:
        diffusers ``FlowMatchEulerDiscreteScheduler.__init__`` and ``set_timesteps`` (static
        ``shift``), Stable Diffusion 3(.5) ``scheduler_config.json``.
    """
    n = _check_int("num_steps", num_steps, minimum=1)
    k = _check_finite("shift", shift)
    if k <= 0.0:
        raise ValueError(f"shift must be > 0, got {k}")
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    t_min = torch.tensor(1.0 / SD3_NUM_TRAIN_TIMESTEPS, dtype=torch.float64)
    s_min = float(_static_shift(t_min, k))  # the constructor's smallest (already shifted) sigma
    s = torch.linspace(1.0, s_min, n, dtype=torch.float64)
    sigmas = _static_shift(s, k)  # set_timesteps shifts the grid again
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(dtype)


def sigmas_from_scheduler(scheduler: Any) -> Tensor:
    """Take the σ schedule from a diffusers flow-matching scheduler, checked and ready for the SDE step.

    Call it after ``scheduler.set_timesteps(N, ...)`` (or after the pipeline has done so); it reads
    ``scheduler.sigmas`` and returns them as a float64 CPU tensor, with a terminal 0 appended if
    the scheduler did not append one. Use it for samplers without a dedicated function here
    ([`sd3_sigmas`][rewardkit.core.schedules.sd3_sigmas],
    [`qwen_image_sigmas`][rewardkit.core.schedules.qwen_image_sigmas],
    [`flux2_sigmas`][rewardkit.core.schedules.flux2_sigmas]):

    ```python
    pipe.scheduler.set_timesteps(28, device="cuda")
    sigmas = sigmas_from_scheduler(pipe.scheduler)
    out = sde_step(x, v, float(sigmas[i]), float(sigmas[i + 1]), ...)
    ```

    Pass ``sigmas[i]`` and ``sigmas[i + 1]`` as σ and σ' of step ``i`` to the SDE step, **not**
    ``scheduler.timesteps[i]``: for flow-matching schedulers the timesteps are σ·1000 (the value the
    transformer is conditioned on), not the noise level. The function is duck-typed (no diffusers
    import): any object with a ``sigmas`` tensor, array or sequence works. The values are the
    scheduler's own, typically float32 widened to float64; an img2img pipeline that starts at
    ``scheduler.begin_index`` still gets the full schedule, to be indexed from there.

    Args:
        scheduler: a scheduler after ``set_timesteps``, e.g. diffusers'
            ``FlowMatchEulerDiscreteScheduler``. A scheduler that has a ``set_timesteps`` method
            must also have a non-None ``num_inference_steps`` (diffusers sets it there).

    Returns:
        `(N + 1,)` float64 CPU tensor ``[σ_0, …, σ_{N-1}, 0]``, strictly decreasing, in [0, 1].

    Raises:
        ValueError: if ``set_timesteps`` was not called, or ``scheduler.sigmas`` is missing or
            empty, not 1-D, not finite, outside [0, 1] (not a flow-matching scheduler) or not
            strictly decreasing (e.g. an inverted schedule).
        TypeError: if ``scheduler.sigmas`` is not convertible to a tensor of numbers.

    Example:
        >>> from types import SimpleNamespace
        >>> sigmas_from_scheduler(SimpleNamespace(sigmas=[1.0, 0.75, 0.5]))
        tensor([1.0000, 0.7500, 0.5000, 0.0000], dtype=torch.float64)
    """
    first = "call scheduler.set_timesteps(N) first"
    if callable(getattr(scheduler, "set_timesteps", None)) and (
        getattr(scheduler, "num_inference_steps", None) is None
    ):
        raise ValueError(f"scheduler has no inference schedule (num_inference_steps is None): {first}")
    raw = getattr(scheduler, "sigmas", None)
    if raw is None:
        raise ValueError(f"scheduler.sigmas is missing (got {type(scheduler).__name__} without it): {first}")
    try:
        if isinstance(raw, Tensor):
            sigmas = raw.detach().to(device="cpu", dtype=torch.float64)
        else:
            sigmas = torch.as_tensor(raw, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"scheduler.sigmas must be a tensor, array or sequence of numbers, got {type(raw).__name__}"
        ) from err
    if sigmas.ndim != 1:
        raise ValueError(f"scheduler.sigmas must be 1-D, got shape {tuple(sigmas.shape)}")
    if sigmas.numel() == 0:
        raise ValueError(f"scheduler.sigmas is empty: {first}")
    if not bool(torch.isfinite(sigmas).all()):
        raise ValueError(f"scheduler.sigmas must be finite, got {sigmas.tolist()}")
    lo, hi = float(sigmas.min()), float(sigmas.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"scheduler.sigmas must lie in [0, 1] (a flow-matching scheduler, e.g. "
            f"FlowMatchEulerDiscreteScheduler), got values in [{lo}, {hi}]"
        )
    bad = (sigmas[1:] >= sigmas[:-1]).nonzero()
    if bad.numel() > 0:
        i = int(bad[0, 0])
        raise ValueError(
            "scheduler.sigmas must be strictly decreasing (σ_0 > σ_1 > … > 0; an inverted schedule "
            f"is not supported), got sigmas[{i + 1}] = {float(sigmas[i + 1])} >= "
            f"sigmas[{i}] = {float(sigmas[i])}"
        )
    if float(sigmas[-1]) != 0.0:
        sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
    if sigmas.numel() < 2:
        raise ValueError(f"scheduler.sigmas must hold at least one step (a value > 0), got {sigmas.tolist()}")
    return sigmas


def sde_window(
    num_steps: int,
    *,
    epoch: int,
    seed: int = 42,
    train_steps: Sequence[int] | None = None,
    num_train_steps: int = 1,
) -> Tensor:
    r"""Step indices that are stochastic (SDE) and trained in this epoch.

    $$
    \mathcal{W}_e = \mathrm{sort}\big(T[\pi_e[:k]]\big),\qquad
    \pi_e = \mathrm{randperm}(|T|;\ \text{seed} = e + \text{seed}),
    $$
    where $T$ is ``train_steps`` (default ``0 … N-2``: every step but the last) and
    $k = \min(\text{num\_train\_steps}, |T|)$. The draw depends only on ``(epoch, seed)`` and
    uses a private ``torch.Generator``, so it is identical on every rank and every sample, and
    the global RNG is left untouched. The rollout uses the noise level ``a`` at these steps and
    ``a = 0`` (the deterministic Euler step) elsewhere; log-probs are computed and trained only
    here.

    Args:
        num_steps: number of sampling steps N.
        epoch: current epoch e (≥ 0).
        seed: base seed (the reference's ``train.seed`` = 42).
        train_steps: candidate step indices T, each in ``0 … N-1``, no duplicates. None means
            ``0 … N-2``. DyRef uses ``[1, 2, 3]``.
        num_train_steps: how many indices k to draw without replacement (all of T if k ≥ |T|).

    Returns:
        `(k,)` int64 tensor of step indices in increasing order.

    Example:
        >>> w = sde_window(10, epoch=0, train_steps=[1, 2, 3])
        >>> w.shape, int(w[0]) in (1, 2, 3)
        (torch.Size([1]), True)

    References:
        Flow-Factory ``scheduler/flow_match_euler_discrete.py`` (``train_steps``,
        ``num_train_steps``) and ``trainers/grpo.py``; docs: SDE sampling and the fused log-prob
    """
    n = _check_int("num_steps", num_steps, minimum=1)
    e = _check_int("epoch", epoch, minimum=0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    k = _check_int("num_train_steps", num_train_steps, minimum=1)
    if train_steps is None:
        if n < 2:
            raise ValueError(
                "the default train_steps (0 … num_steps-2) is empty for num_steps=1; "
                "pass train_steps explicitly"
            )
        candidates = torch.arange(n - 1, dtype=torch.int64)
    else:
        steps = list(train_steps)
        if not steps:
            raise ValueError("train_steps must hold at least one step index, got []")
        for i in steps:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
                raise ValueError(f"train_steps must hold int step indices in 0 … {n - 1}, got {steps}")
        if len(set(steps)) != len(steps):
            raise ValueError(f"train_steps must not repeat an index, got {steps}")
        candidates = torch.tensor(steps, dtype=torch.int64)
    generator = torch.Generator(device="cpu").manual_seed(e + seed)
    perm = torch.randperm(candidates.numel(), generator=generator)
    chosen = candidates[perm[: min(k, candidates.numel())]]
    return torch.sort(chosen).values
