r"""Name → function registries of the GRPO recipe's RL pieces: advantage estimators, policy losses, KL forms.

The GRPO loop looks each piece up by the name in its config (``advantage.estimator``,
``advantage.policy_loss``, ``kl.type``), so a new variant is one function plus one registration,
with no change to [`grpo`][rewardkit.recipes.grpo]:

```python
# my_estimators.py, listed in the config's extra_imports; select it with advantage.estimator: centred
from rewardkit.recipes.registry import AdvantageResult, register_advantage

def centred(inputs, config):  # the weighted reward minus its group's mean, times options.scale
    total = inputs.rewards @ inputs.weights
    sums = total.new_zeros(int(inputs.groups.max()) + 1).index_add(0, inputs.groups, total)
    means = sums / inputs.groups.bincount()
    scale = float(config.options.get("scale", 1.0))
    return AdvantageResult(scale * (total - means[inputs.groups]), inputs.baseline)

register_advantage("centred", centred)
```

Each piece is a plain function of a frozen inputs record and its config section (whose
``options`` mapping carries a custom piece's own parameters from YAML):

* advantage estimators, ``advantage.estimator`` (built-ins ``gdpo``, ``grpo``, ``baseline``):
  ``(AdvantageInputs, AdvantageConfig) -> AdvantageResult``;
* policy losses, ``advantage.policy_loss`` (built-in ``clipped``):
  ``(PolicyLossInputs, AdvantageConfig) -> (scalar loss, PolicyLossStats)``;
* KL forms, ``kl.type`` (built-ins ``v``, ``x``, ``gaussian``): ``(KLInputs, KLConfig) -> (B,) KL``.

Registering a taken name raises; looking up an unknown one raises a ``ValueError`` that lists
the registered names (with the closest match).
"""

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

import torch
from torch import Tensor

from rewardkit.core.advantages import gdpo_advantages, group_advantages
from rewardkit.core.baseline import BaselineState, baseline_advantages
from rewardkit.core.kl import kl_gaussian, kl_v_based, kl_x_based
from rewardkit.core.loss import PolicyLossStats, clipped_policy_loss
from rewardkit.core.sde import SDECoefficients
from rewardkit.recipes.config import AdvantageConfig, KLConfig

__all__ = [
    "ADVANTAGES",
    "KLS",
    "POLICY_LOSSES",
    "AdvantageEstimator",
    "AdvantageInputs",
    "AdvantageResult",
    "KLForm",
    "KLInputs",
    "PolicyLoss",
    "PolicyLossInputs",
    "Registry",
    "baseline_estimator",
    "clipped_loss",
    "gaussian_kl",
    "gdpo_estimator",
    "get_advantage",
    "get_kl",
    "get_policy_loss",
    "grpo_estimator",
    "list_advantages",
    "list_kls",
    "list_policy_losses",
    "register_advantage",
    "register_kl",
    "register_policy_loss",
    "v_kl",
    "x_kl",
]

F = TypeVar("F", bound=Callable[..., object])


class Registry(Generic[F]):
    """Functions of one kind by name.

    Args:
        kind: what the functions are, for messages (``"advantage estimator"``).
        register_with: the function that registers one, named in the unknown-name message.
    """

    def __init__(self, kind: str, register_with: str) -> None:
        self.kind = kind
        self.register_with = register_with
        self._functions: dict[str, F] = {}

    def register(self, name: str, fn: F) -> F:
        """Add ``fn`` under ``name`` and return it; a taken name raises ``ValueError``.

        Registering the same function under the same name again does nothing.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if not callable(fn):
            raise TypeError(f"{self.kind} {name!r} must be callable, got {type(fn).__name__}")
        taken = self._functions.get(name)
        if taken is not None and taken is not fn:
            raise ValueError(
                f"{self.kind} {name!r} is already registered "
                f"({getattr(taken, '__module__', '?')}.{getattr(taken, '__qualname__', '?')}); "
                "choose another name"
            )
        self._functions[name] = fn
        return fn

    def unregister(self, name: str) -> None:
        """Remove ``name`` (nothing happens when it is not registered)."""
        self._functions.pop(name, None)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._functions)

    def get(self, name: str) -> F:
        """The function registered under ``name``; an unknown name raises ``ValueError``."""
        if isinstance(name, str) and name in self._functions:
            return self._functions[name]
        close = difflib.get_close_matches(str(name), self._functions, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown {self.kind} {name!r}{hint}; registered: {self.names()}. "
            f"Add one with {self.register_with}(name, fn) in a module listed in extra_imports."
        )


# ----------------------------------------------------------------------------------------------
# advantage estimators
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdvantageInputs:
    """What an advantage estimator sees: the epoch's whole batch, gathered from every process.

    Attributes:
        rewards: `(N, K)` rewards of every sample in global sample order, NaN where undefined.
        weights: `(K,)` reward weights (``rewards[].weight``).
        groups: `(N,)` group id of every sample (the ``group_size`` samples of one instance).
        baseline: the moving-average baseline before this batch (saved in checkpoints); an
            estimator that keeps no state returns it unchanged.
    """

    rewards: Tensor
    weights: Tensor
    groups: Tensor
    baseline: BaselineState


class AdvantageResult(NamedTuple):
    """What an advantage estimator returns.

    Attributes:
        advantages: `(N,)` advantage of every sample, in the order of ``AdvantageInputs.rewards``.
        baseline: the baseline after this batch (``inputs.baseline`` when the estimator keeps none).
    """

    advantages: Tensor
    baseline: BaselineState


AdvantageEstimator = Callable[[AdvantageInputs, AdvantageConfig], AdvantageResult]
"""``(inputs, config.advantage) -> AdvantageResult``."""

#: The advantage estimators (``advantage.estimator``).
ADVANTAGES: Registry[AdvantageEstimator] = Registry("advantage estimator", "register_advantage")


def register_advantage(name: str, fn: AdvantageEstimator) -> AdvantageEstimator:
    """Register an advantage estimator under ``name`` (``advantage.estimator: name``); returns ``fn``.

    Raises:
        ValueError: the name is taken.
    """
    return ADVANTAGES.register(name, fn)


def list_advantages() -> list[str]:
    """Names of the registered advantage estimators, sorted.

    Example:
        >>> {"baseline", "gdpo", "grpo"} <= set(list_advantages())
        True
    """
    return ADVANTAGES.names()


def get_advantage(name: str) -> AdvantageEstimator:
    """The advantage estimator registered under ``name``.

    Raises:
        ValueError: unknown name (the message lists the registered ones).
    """
    return ADVANTAGES.get(name)


def _weighted_total(inputs: AdvantageInputs, config: AdvantageConfig) -> Tensor:
    """`(N,)` weighted sum of the rewards; refuses undefined (NaN) rewards."""
    if bool(torch.isnan(inputs.rewards).any()):
        raise ValueError(
            f"advantage.estimator={config.estimator!r} needs every reward defined for every sample, "
            "but some are NaN (e.g. a style reward without a style reference); use 'gdpo'"
        )
    return inputs.rewards @ inputs.weights


def gdpo_estimator(inputs: AdvantageInputs, config: AdvantageConfig) -> AdvantageResult:
    """``gdpo``: [`gdpo_advantages`][rewardkit.gdpo_advantages], per-reward group z-scores, weighted."""
    adv = gdpo_advantages(
        inputs.rewards, inputs.groups, inputs.weights, std_floor=config.std_floor, ddof=config.ddof
    )
    return AdvantageResult(adv, inputs.baseline)


def grpo_estimator(inputs: AdvantageInputs, config: AdvantageConfig) -> AdvantageResult:
    """``grpo``: [`group_advantages`][rewardkit.group_advantages] of the weighted reward sum."""
    adv = group_advantages(
        _weighted_total(inputs, config),
        inputs.groups,
        std_floor=config.std_floor,
        ddof=config.ddof,
        global_std=config.global_std,
    )
    return AdvantageResult(adv, inputs.baseline)


def baseline_estimator(inputs: AdvantageInputs, config: AdvantageConfig) -> AdvantageResult:
    """``baseline`` (seed 003): [`baseline_advantages`][rewardkit.baseline_advantages] of the weighted sum."""
    adv, state = baseline_advantages(
        _weighted_total(inputs, config), inputs.baseline, decay=config.baseline_decay
    )
    return AdvantageResult(adv, state)


# ----------------------------------------------------------------------------------------------
# policy losses
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyLossInputs:
    """What a policy loss sees: one micro-batch at one trained step.

    Attributes:
        log_prob: `(B,)` log-probability of the sampled step under the current policy (carries
            the gradient).
        old_log_prob: `(B,)` the one recorded at rollout.
        advantages: `(B,)` advantages (unclipped).
        weights: `(B,)` DAR loss weights (ones when DAR is off).
    """

    log_prob: Tensor
    old_log_prob: Tensor
    advantages: Tensor
    weights: Tensor


PolicyLoss = Callable[[PolicyLossInputs, AdvantageConfig], tuple[Tensor, PolicyLossStats]]
"""``(inputs, config.advantage) -> (scalar loss, PolicyLossStats)``."""

#: The policy losses (``advantage.policy_loss``).
POLICY_LOSSES: Registry[PolicyLoss] = Registry("policy loss", "register_policy_loss")


def register_policy_loss(name: str, fn: PolicyLoss) -> PolicyLoss:
    """Register a policy loss under ``name`` (``advantage.policy_loss: name``); returns ``fn``.

    Raises:
        ValueError: the name is taken.
    """
    return POLICY_LOSSES.register(name, fn)


def list_policy_losses() -> list[str]:
    """Names of the registered policy losses, sorted."""
    return POLICY_LOSSES.names()


def get_policy_loss(name: str) -> PolicyLoss:
    """The policy loss registered under ``name``.

    Raises:
        ValueError: unknown name (the message lists the registered ones).
    """
    return POLICY_LOSSES.get(name)


def clipped_loss(inputs: PolicyLossInputs, config: AdvantageConfig) -> tuple[Tensor, PolicyLossStats]:
    """``clipped``: [`clipped_policy_loss`][rewardkit.clipped_policy_loss] (``clip_range``, ``clip``)."""
    return clipped_policy_loss(
        inputs.log_prob,
        inputs.old_log_prob,
        inputs.advantages,
        clip_range=config.clip_range,
        adv_clip=config.clip,
        weights=inputs.weights,
    )


# ----------------------------------------------------------------------------------------------
# KL forms
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KLInputs:
    r"""What a KL form sees: the policy and the reference at one trained step of a micro-batch.

    Attributes:
        velocity: `(B, ...)` velocity of the trained policy (carries the gradient).
        ref_velocity: `(B, ...)` velocity of the reference policy (constant).
        latents: `(B, ...)` the latent $x$ the step starts from.
        coef: the step's coefficients (mean $\mu = c_x x + c_v v$, noise std ``coef.std``).
        sigma_t: the diffusion coefficient $\sigma_t$ (the noise std without $\sqrt{|\Delta t|}$).
    """

    velocity: Tensor
    ref_velocity: Tensor
    latents: Tensor
    coef: SDECoefficients
    sigma_t: float

    @property
    def mean(self) -> Tensor:
        """`(B, ...)` step mean of the policy."""
        return self.coef.c_x * self.latents + self.coef.c_v * self.velocity

    @property
    def ref_mean(self) -> Tensor:
        """`(B, ...)` step mean of the reference."""
        return self.coef.c_x * self.latents + self.coef.c_v * self.ref_velocity

    @property
    def noise_std(self) -> float:
        r"""The step's noise std $s = \sigma_t\sqrt{|\Delta t|}$."""
        return float(self.coef.std)


KLForm = Callable[[KLInputs, KLConfig], Tensor]
"""``(inputs, config.kl) -> (B,) KL``."""

#: The KL forms (``kl.type``).
KLS: Registry[KLForm] = Registry("KL form", "register_kl")


def register_kl(name: str, fn: KLForm) -> KLForm:
    """Register a KL form under ``name`` (``kl.type: name``); returns ``fn``.

    Raises:
        ValueError: the name is taken.
    """
    return KLS.register(name, fn)


def list_kls() -> list[str]:
    """Names of the registered KL forms, sorted."""
    return KLS.names()


def get_kl(name: str) -> KLForm:
    """The KL form registered under ``name``.

    Raises:
        ValueError: unknown name (the message lists the registered ones).
    """
    return KLS.get(name)


def v_kl(inputs: KLInputs, config: KLConfig) -> Tensor:
    """``v``: Flow-Factory's [`kl_v_based`][rewardkit.kl_v_based]."""
    return kl_v_based(inputs.velocity, inputs.ref_velocity, inputs.sigma_t)


def x_kl(inputs: KLInputs, config: KLConfig) -> Tensor:
    """``x``: Flow-GRPO's [`kl_x_based`][rewardkit.kl_x_based]."""
    return kl_x_based(inputs.mean, inputs.ref_mean, inputs.sigma_t)


def gaussian_kl(inputs: KLInputs, config: KLConfig) -> Tensor:
    """``gaussian``: the exact [`kl_gaussian`][rewardkit.kl_gaussian]."""
    return kl_gaussian(inputs.mean, inputs.ref_mean, inputs.noise_std)


# ----------------------------------------------------------------------------------------------
# the built-ins
# ----------------------------------------------------------------------------------------------

register_advantage("gdpo", gdpo_estimator)
register_advantage("grpo", grpo_estimator)
register_advantage("baseline", baseline_estimator)
register_policy_loss("clipped", clipped_loss)
register_kl("v", v_kl)
register_kl("x", x_kl)
register_kl("gaussian", gaussian_kl)
