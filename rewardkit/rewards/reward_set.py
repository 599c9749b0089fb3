r"""Several weighted rewards evaluated together into the `(N, K)` matrix GDPO consumes.

For rewards $k = 1..K$ with weights $w_k$ a reward set returns $R \in \mathbb{R}^{N\times K}$,
$R_{ik}$ = reward $k$ of sample $i$ (NaN where it does not apply), ready for

$$
A = \operatorname{GDPO}(R, \text{groups}, w)
$$

via [`gdpo_advantages`][rewardkit.gdpo_advantages], which normalises each column within its
groups, skipping the NaN entries, before weighting. DyRef's RL stage is the set
``image_similarity`` (SigLIP2 ``flat`` + DRS, weight 1.0) and ``csd_score`` (weight 0.8).
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from rewardkit.core.advantages import gdpo_advantages
from rewardkit.rewards._images import Images, as_image_list
from rewardkit.rewards.protocol import RewardModel, SampleContext, as_contexts

__all__ = ["RewardSet", "RewardSetOutput", "WeightedReward"]


@dataclass(frozen=True)
class WeightedReward:
    """One member of a [`RewardSet`][rewardkit.RewardSet].

    Attributes:
        name: column name (unique within the set; DAR looks for ``image_similarity``).
        reward: the [`RewardModel`][rewardkit.RewardModel].
        weight: GDPO weight $w_k$ (finite).
    """

    name: str
    reward: RewardModel
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"WeightedReward.name must be a non-empty str, got {self.name!r}")
        if not callable(self.reward):
            raise TypeError(f"WeightedReward.reward must be a RewardModel, got {type(self.reward).__name__}")
        if (
            isinstance(self.weight, bool)
            or not isinstance(self.weight, int | float)
            or not math.isfinite(self.weight)
        ):
            raise ValueError(f"weight of {self.name!r} must be a finite number, got {self.weight!r}")


@dataclass(frozen=True)
class RewardSetOutput:
    """Rewards of a batch under a [`RewardSet`][rewardkit.RewardSet].

    Attributes:
        rewards: `(N, K)` float32, column $k$ = reward ``names[k]``; NaN where undefined.
        weights: `(K,)` float32 GDPO weights.
        names: the column names.
        extras: ``extras[name]`` = that reward's extras (e.g. ``extras["image_similarity"]["sim_raw"]``).
    """

    rewards: Tensor
    weights: Tensor
    names: tuple[str, ...]
    extras: Mapping[str, Mapping[str, Tensor]] = field(default_factory=dict)

    def column(self, name: str) -> Tensor:
        """The `(N,)` column of one reward."""
        if name not in self.names:
            raise KeyError(f"no reward named {name!r}; columns are {list(self.names)}")
        return self.rewards[:, self.names.index(name)]

    def advantages(self, group_ids: Tensor, **kwargs: Any) -> Tensor:
        """GDPO advantages of these rewards: ``gdpo_advantages(rewards, group_ids, weights, **kwargs)``."""
        return gdpo_advantages(self.rewards, group_ids, self.weights, **kwargs)


class RewardSet:
    """Evaluate several rewards on the same batch and stack them into `(N, K)`.

    Images are converted once and shared; each reward receives the same contexts.

    Args:
        rewards: the members, as [`WeightedReward`][rewardkit.WeightedReward]s or
            ``(name, reward, weight)`` tuples.

    Raises:
        ValueError: no members, duplicate names, non-finite weights.

    Example:
        >>> import torch, rewardkit
        >>> class Const:
        ...     name = "const"
        ...     def __init__(self, v): self.v = v
        ...     def __call__(self, images, contexts):
        ...         n = len(rewardkit.rewards.as_image_list(images))
        ...         return rewardkit.RewardOutput(torch.full((n,), self.v))
        >>> rs = rewardkit.RewardSet([("a", Const(1.0), 1.0), ("b", Const(float("nan")), 0.8)])
        >>> out = rs(torch.rand(2, 3, 8, 8), rewardkit.SampleContext())
        >>> out.rewards
        tensor([[1., nan],
                [1., nan]])
    """

    def __init__(self, rewards: Sequence[WeightedReward | tuple[str, RewardModel, float]]) -> None:
        members = [r if isinstance(r, WeightedReward) else WeightedReward(*r) for r in rewards]
        if not members:
            raise ValueError("a RewardSet needs at least one reward")
        names = [m.name for m in members]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"reward names must be unique within a set, got duplicates {duplicates}")
        self.members: tuple[WeightedReward, ...] = tuple(members)

    @classmethod
    def from_specs(cls, specs: Sequence[Mapping[str, Any]]) -> "RewardSet":
        """Build from config entries, one per reward.

        Each entry is ``{"reward": registry name, "name": column, "weight": w, "options": {...}}``;
        ``name`` defaults to the registry name and ``weight`` to 1.0; ``options`` go to
        [`load_reward`][rewardkit.load_reward].
        """
        from rewardkit.rewards.registry import load_reward

        members = []
        for spec in specs:
            unknown = set(spec) - {"reward", "name", "weight", "options"}
            if unknown or "reward" not in spec:
                raise ValueError(
                    "a reward spec needs 'reward' and may have 'name', 'weight', 'options'; "
                    f"got keys {sorted(spec)}"
                )
            model = load_reward(spec["reward"], **dict(spec.get("options", {})))
            members.append(
                WeightedReward(spec.get("name", spec["reward"]), model, float(spec.get("weight", 1.0)))
            )
        return cls(members)

    @property
    def names(self) -> tuple[str, ...]:
        """Column names, in order."""
        return tuple(m.name for m in self.members)

    @property
    def weights(self) -> Tensor:
        """`(K,)` float32 weights."""
        return torch.tensor([m.weight for m in self.members], dtype=torch.float32)

    def __repr__(self) -> str:
        inner = ", ".join(f"{m.name}×{m.weight:g}" for m in self.members)
        return f"RewardSet({inner})"

    def __call__(self, images: Images, contexts: SampleContext | Sequence[SampleContext]) -> RewardSetOutput:
        """Evaluate every member on the batch."""
        items = as_image_list(images)
        ctxs = as_contexts(contexts, len(items))
        columns: list[Tensor] = []
        extras: dict[str, Mapping[str, Tensor]] = {}
        for member in self.members:
            out = member.reward(items, ctxs)
            if out.scores.shape != (len(items),):
                raise ValueError(
                    f"reward {member.name!r} returned scores of shape {tuple(out.scores.shape)} "
                    f"for {len(items)} images; expected ({len(items)},)"
                )
            columns.append(out.scores.detach().float().cpu())
            extras[member.name] = {k: v.detach().cpu() for k, v in out.extras.items()}
        rewards = torch.stack(columns, dim=1) if items else torch.empty(0, len(columns))
        return RewardSetOutput(rewards, self.weights, self.names, extras)
