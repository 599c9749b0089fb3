r"""Group rollouts with log-probs, and the training forward that recomputes them.

One loop for every backbone (it only calls :class:`~rewardkit.backbone.Backbone` methods and the
core SDE step). For a condition $c$ and a schedule $\sigma_0 = 1 > \dots > \sigma_N = 0$, each
of the G samples of a group starts from $x_0 \sim \mathcal N(0, I)$ and takes, for
$i = 0 \dots N-1$,

$$
x_{i+1} = \mu_i + s_i\,\varepsilon_i,\qquad \mu_i = c_x\,x_i + c_v\,v_\theta(x_i, \sigma_i, c),
$$

with the SDE coefficients of :func:`rewardkit.core.sde.sde_step` at the window steps
$i \in \mathcal W$ (noise level $a$) and the deterministic Euler step $x_i + v\,(\sigma_{i+1} -
\sigma_i)$ elsewhere (docs: SDE sampling and the fused log-prob). At each window step the trajectory records
$x_i$, $x_{i+1}$ (float32) and $\ell^{old}_i = \log p(x_{i+1} \mid x_i)$ (mean over elements);
:func:`step_log_prob` recomputes $\ell_i$ from exactly those tensors with the current weights,
so $\exp(\ell_i - \ell^{old}_i) = 1$ before any update (docs: SDE sampling and the fused log-prob).

The G samples of a group share one condition (same references), so the group is batched
(``micro_batch`` splits the transformer calls); different groups, which may have ragged
reference sizes, are rolled out one after the other.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from rewardkit.backbone.protocol import Backbone, Condition
from rewardkit.core.sde import KINDS, Backend, Kind, sde_log_prob, sde_step

__all__ = ["Rollout", "StepLogProb", "Trajectory", "rollout", "step_log_prob"]


@dataclass(frozen=True, eq=False)
class Trajectory:
    r"""What the policy-gradient step needs from one group's rollout.

    Attributes:
        condition: the group's condition, stored once (not per sample).
        sigmas: `(N + 1,)` float64 schedule used by the rollout.
        step_indices: the K trained (window) step indices $i$, increasing; step $i$ goes from
            ``sigmas[i]`` to ``sigmas[i + 1]``.
        latents: `(G, K, L, D)` float32 $x_i$ at each trained step.
        next_latents: `(G, K, L, D)` float32 $x_{i+1}$ at each trained step.
        log_probs: `(G, K)` float32 old log-probs $\ell^{old}_i$ (mean over L·D elements).
        kind: SDE kind of the window steps (``"flow_sde"``, ``"dance_sde"``, ``"cps"``, ``"ode"``).
        noise_level: noise level $a$ of the window steps.
        guidance_scale: classifier-free guidance scale used for every velocity (1 = off); the
            training forward reuses it.
    """

    condition: Condition
    sigmas: Tensor
    step_indices: tuple[int, ...]
    latents: Tensor
    next_latents: Tensor
    log_probs: Tensor
    kind: Kind
    noise_level: float
    guidance_scale: float

    @property
    def group_size(self) -> int:
        """G, the number of samples."""
        return int(self.latents.shape[0])

    @property
    def num_steps(self) -> int:
        """N, the number of sampling steps."""
        return int(self.sigmas.numel()) - 1

    def position(self, step: int) -> int:
        """Index k in ``step_indices`` of the trained step ``step`` (raises if not trained)."""
        if step not in self.step_indices:
            raise ValueError(
                f"step {step} was not a trained (SDE window) step; trained steps: {self.step_indices}"
            )
        return self.step_indices.index(step)

    def to(self, device: torch.device | str) -> "Trajectory":
        """A copy with every tensor (and the condition) on ``device``."""
        return Trajectory(
            condition=self.condition.to(device),
            sigmas=self.sigmas,
            step_indices=self.step_indices,
            latents=self.latents.to(device),
            next_latents=self.next_latents.to(device),
            log_probs=self.log_probs.to(device),
            kind=self.kind,
            noise_level=self.noise_level,
            guidance_scale=self.guidance_scale,
        )


@dataclass(frozen=True, eq=False)
class Rollout:
    """Result of :func:`rollout` for one group.

    Attributes:
        images: `(G, 3, H, W)` float32 decoded images in [0, 1], or None with ``decode=False``.
        final_latents: `(G, L, D)` float32 final packed latents $x_N$.
        trajectory: the record for the training step.
    """

    images: Tensor | None
    final_latents: Tensor
    trajectory: Trajectory


class StepLogProb(NamedTuple):
    r"""Output of :func:`step_log_prob`.

    Attributes:
        log_prob: `(B,)` recomputed log-probs $\ell_i$ (carry the gradient).
        velocity: `(B, L, D)` float32 velocity $v_\theta(x_i, \sigma_i, c)$.
    """

    log_prob: Tensor
    velocity: Tensor


def _check_window(sde_steps: Sequence[int] | Tensor | None, num_steps: int) -> tuple[int, ...]:
    steps = [] if sde_steps is None else [int(i) for i in sde_steps]
    if any(not 0 <= i < num_steps for i in steps) or len(set(steps)) != len(steps):
        raise ValueError(
            f"sde_steps must be distinct step indices in 0 … {num_steps - 1}, got {steps} "
            f"(e.g. rewardkit.core.schedules.sde_window(num_steps, epoch=e))"
        )
    return tuple(sorted(steps))


def _check_generators(
    generator: torch.Generator | Sequence[torch.Generator], group_size: int
) -> list[torch.Generator] | None:
    """None for one shared generator, else the list of G per-sample generators (checked)."""
    if isinstance(generator, torch.Generator):
        return None
    if isinstance(generator, Sequence) and all(isinstance(gen, torch.Generator) for gen in generator):
        if len(generator) != group_size:
            raise ValueError(
                f"got {len(generator)} per-sample generators for group_size={group_size}; pass one "
                "torch.Generator per sample, or a single generator for the whole group"
            )
        return list(generator)
    raise TypeError(
        "generator must be a torch.Generator or a sequence of G generators (rollouts never draw "
        "from the global RNG); pass e.g. torch.Generator().manual_seed(seed)"
    )


def _per_sample_noise(generators: Sequence[torch.Generator], x: Tensor) -> Tensor:
    """`(G, L, D)` standard normal noise, row g drawn from ``generators[g]`` on its device."""
    rows = [
        torch.randn(x.shape[1:], generator=gen, dtype=torch.float32, device=gen.device) for gen in generators
    ]
    return torch.stack(rows).to(x.device)


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _velocity(
    backbone: Backbone,
    x: Tensor,
    sigma: float,
    condition: Condition,
    *,
    guidance_scale: float,
    adapter: bool,
    micro_batch: int | None,
) -> Tensor:
    """Velocity of a `(B, L, D)` batch, in chunks of ``micro_batch`` samples."""
    if micro_batch is None or micro_batch >= x.shape[0]:
        return backbone.velocity(x, sigma, condition, guidance_scale=guidance_scale, adapter=adapter)
    chunks = [
        backbone.velocity(part, sigma, condition, guidance_scale=guidance_scale, adapter=adapter)
        for part in torch.split(x, micro_batch)
    ]
    return torch.cat(chunks)


def rollout(
    backbone: Backbone,
    condition: Condition,
    *,
    group_size: int,
    num_steps: int,
    generator: torch.Generator | Sequence[torch.Generator],
    sde_steps: Sequence[int] | Tensor | None = None,
    noise_level: float = 1.0,
    kind: Kind = "flow_sde",
    guidance_scale: float = 1.0,
    micro_batch: int | None = None,
    decode: bool = True,
    latents: Tensor | None = None,
) -> Rollout:
    r"""Sample a group of G images for one condition, recording the trained steps.

    See the module docstring for the dynamics. Runs without gradients; the velocity uses the
    backbone's current adapter (the rollout policy) and precision policy.

    Args:
        backbone: any :class:`~rewardkit.backbone.Backbone`.
        condition: from ``backbone.encode_condition``.
        group_size: G ≥ 1 samples.
        num_steps: N sampling steps.
        generator: the only source of randomness (initial noise, then SDE noise). Either one
            generator for the whole group, or a sequence of G generators, one per sample:
            sample g then draws its initial noise and every SDE noise from ``generator[g]``
            alone, so a group split into parts (e.g. across ranks) with the same per-sample
            generators yields exactly the samples of the whole group.
        sde_steps: the window $\mathcal W$: step indices that are stochastic and recorded, e.g.
            ``sde_window(N, epoch=e, train_steps=[1, 2, 3])``. None or empty: a deterministic
            (ODE) rollout that records nothing.
        noise_level: $a$ at the window steps (0 makes them Euler steps too).
        kind: SDE kind at the window steps.
        guidance_scale: CFG scale w for every step (needs a negative prompt in the condition
            when > 1); stored so that training uses the same.
        micro_batch: split the transformer and VAE-decode calls into chunks of this many samples.
        decode: decode the final latents to images.
        latents: optional `(G, L, D)` initial noise instead of drawing it.

    Returns:
        :class:`Rollout` with images, final latents and the :class:`Trajectory`.
    """
    g = _check_positive_int("group_size", group_size)
    n = _check_positive_int("num_steps", num_steps)
    if micro_batch is not None:
        _check_positive_int("micro_batch", micro_batch)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    per_sample = _check_generators(generator, g)
    if guidance_scale > 1.0 and not condition.has_negative:
        raise ValueError(
            f"guidance_scale={guidance_scale} > 1 needs negative-prompt features; encode the "
            "condition with negative_prompt=... (e.g. '' or ' ')"
        )
    window = _check_window(sde_steps, n)
    sigmas = backbone.sigmas(n, condition.height, condition.width)
    sigma_max = float(sigmas[1]) if n >= 2 else None
    shared = generator if isinstance(generator, torch.Generator) else None
    if latents is not None:
        if latents.ndim != 3 or latents.shape[0] != g:
            raise ValueError(f"latents must be (G={g}, L, D), got {tuple(latents.shape)}")
        x = latents
    elif per_sample is None:
        x = backbone.initial_latents(g, condition.height, condition.width, generator=shared)
    else:  # sample by sample, as diffusers' randn_tensor does for a list of generators
        h, w = condition.height, condition.width
        x = torch.cat([backbone.initial_latents(1, h, w, generator=gen) for gen in per_sample])
    x = x.to(device=backbone.device, dtype=torch.float32)

    recorded: list[tuple[Tensor, Tensor, Tensor]] = []
    with torch.no_grad():
        for i in range(n):
            sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
            v = _velocity(
                backbone,
                x,
                sigma,
                condition,
                guidance_scale=guidance_scale,
                adapter=True,
                micro_batch=micro_batch,
            )
            if i in window:
                step = sde_step(
                    x,
                    v,
                    sigma,
                    sigma_next,
                    kind=kind,
                    noise_level=noise_level,
                    generator=shared,
                    noise=None if per_sample is None else _per_sample_noise(per_sample, x),
                    sigma_max=sigma_max,
                )
                recorded.append((x, step.next, step.log_prob))
            else:
                step = sde_step(x, v, sigma, sigma_next, kind="ode")
            x = step.next
        images = None
        if decode:
            parts = torch.split(x, micro_batch or g)
            images = torch.cat([backbone.decode_latents(p, condition.height, condition.width) for p in parts])

    shape = (g, 0, *x.shape[1:])
    trajectory = Trajectory(
        condition=condition,
        sigmas=sigmas,
        step_indices=window,
        latents=torch.stack([r[0] for r in recorded], 1) if recorded else x.new_zeros(shape),
        next_latents=torch.stack([r[1] for r in recorded], 1) if recorded else x.new_zeros(shape),
        log_probs=torch.stack([r[2] for r in recorded], 1) if recorded else x.new_zeros(g, 0),
        kind=kind,
        noise_level=float(noise_level),
        guidance_scale=float(guidance_scale),
    )
    return Rollout(images=images, final_latents=x, trajectory=trajectory)


def step_log_prob(
    backbone: Backbone,
    trajectory: Trajectory,
    step: int,
    *,
    samples: Tensor | Sequence[int] | slice | None = None,
    adapter: bool = True,
    backend: Backend = "auto",
) -> StepLogProb:
    r"""Training forward: recompute $v_\theta$ and $\ell_i$ at a stored trained step.

    $$
    \ell_i = \frac{1}{D}\sum_d \log\mathcal N\big(x_{i+1,d};\ c_x x_{i,d} + c_v\,v_\theta(x_i,
    \sigma_i, c)_d,\ s_i^2\big)
    $$

    from the stored $x_i$, $x_{i+1}$ (float32), the step's sigmas, the trajectory's kind, noise
    level and guidance scale, and the stored condition; only $v_\theta$ depends on the weights.
    Gradients flow when grad mode is on (LoRA parameters only: the base is frozen). Use
    ``adapter=False`` under ``torch.no_grad()`` for the KL reference velocity.

    Args:
        backbone: the backbone the trajectory was rolled out with.
        trajectory: from :func:`rollout`.
        step: a trained step index $i$ (one of ``trajectory.step_indices``).
        samples: which of the G samples (indices, slice or None for all).
        adapter: False disables the LoRA adapter (reference policy).
        backend: log-prob backend of :func:`rewardkit.core.sde.sde_log_prob`.

    Returns:
        :class:`StepLogProb` ``(log_prob (B,), velocity (B, L, D))``.
    """
    k = trajectory.position(step)
    index: Tensor | slice
    if samples is None:
        index = slice(None)
    elif isinstance(samples, slice):
        index = samples
    else:
        index = torch.as_tensor(samples, dtype=torch.long)
    x = trajectory.latents[index, k].to(backbone.device)
    x_next = trajectory.next_latents[index, k].to(backbone.device)
    sigmas = trajectory.sigmas
    sigma, sigma_next = float(sigmas[step]), float(sigmas[step + 1])
    v = backbone.velocity(
        x, sigma, trajectory.condition, guidance_scale=trajectory.guidance_scale, adapter=adapter
    )
    log_prob = sde_log_prob(
        x_next,
        x,
        v,
        sigma,
        sigma_next,
        kind=trajectory.kind,
        noise_level=trajectory.noise_level,
        sigma_max=float(sigmas[1]) if trajectory.num_steps >= 2 else None,
        backend=backend,
    )
    return StepLogProb(log_prob=log_prob, velocity=v)
