r"""Image-image similarity reward: cosine between encoder features, optionally DRS-shaped.

For sample $i$ with comparison images $y_{i1},\dots,y_{im_i}$ (by default its ground-truth
target image(s), as in DyRef; optionally its references of one type):

$$
s_{ij} = \cos\big(f(x_i), f(y_{ij})\big),\qquad
\text{sim\_raw}_i = \operatorname{reduce}_j\, s_{ij},\qquad
r_i = \begin{cases}
  \operatorname{reduce}_j\, \sigma\big(k(n_i)\,(s_{ij} - \tau)\big) & \text{DRS on}\\
  \text{sim\_raw}_i & \text{DRS off}
\end{cases}
$$

with ``reduce`` ∈ {mean, max, first} and $k(n_i)$ from [`drs_steepness`][rewardkit.drs_steepness]
($n_i$ = the sample's reference count). The sigmoid is applied **per target before the
reduce** (DyRef's order). A sample with nothing to compare against gets NaN (the reward does
not apply), which [`gdpo_advantages`][rewardkit.gdpo_advantages] turns into a zero advantage.
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

import torch
from torch import Tensor

from rewardkit.core.scaling import RewardScaling, drs_scale, drs_steepness
from rewardkit.rewards._images import ImageInput, Images, as_image, as_image_list
from rewardkit.rewards.encoders import ImageEncoder
from rewardkit.rewards.protocol import REF_TYPES, RewardOutput, SampleContext, as_contexts

__all__ = [
    "Reduce",
    "SimilarityConfig",
    "SimilarityReward",
    "pairwise_cosine",
    "reduce_per_sample",
]

Reduce: TypeAlias = Literal["mean", "max", "first"]
_REDUCES: tuple[str, ...] = ("mean", "max", "first")


def pairwise_cosine(a: Tensor, b: Tensor, *, eps: float = 1e-12) -> Tensor:
    r"""Row-wise cosine similarity of two `(M, D)` feature matrices.

    $$
    s_m = \frac{\langle a_m, b_m\rangle}{\max(\lVert a_m\rVert, \epsilon)\,\max(\lVert b_m\rVert, \epsilon)}
    $$

    Computed in float32 at least (float64 stays float64), so that identical rows give 1 up to
    rounding even for DyRef's 442,368-dimensional ``flat`` SigLIP features.

    Args:
        a: `(M, D)` features.
        b: `(M, D)` features.
        eps: floor of the norms (a zero row gives similarity 0).

    Returns:
        `(M,)` similarities in ``[-1, 1]``.

    Raises:
        ValueError: shapes differ or are not 2-D, or NaN/inf features.
    """
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"a and b must both be (M, D) with equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all())):
        raise ValueError("features contain NaN or infinite values (check the encoder's dtype / inputs)")
    dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    a, b = a.to(dtype), b.to(dtype)
    an = a / a.norm(dim=1, keepdim=True).clamp_min(eps)
    bn = b / b.norm(dim=1, keepdim=True).clamp_min(eps)
    out: Tensor = (an * bn).sum(dim=1).clamp(-1.0, 1.0)
    return out


def reduce_per_sample(values: Tensor, owner: Tensor, n: int, how: Reduce = "mean") -> Tensor:
    r"""Reduce per-comparison values to one value per sample.

    $$
    y_i = \operatorname{reduce}\{\,v_m : \text{owner}_m = i\,\}
    $$

    with ``mean``, ``max`` or ``first`` (the value with the smallest index $m$). Samples that
    own no value get NaN ("does not apply").

    Args:
        values: `(M,)` float values.
        owner: `(M,)` integer sample index in ``[0, n)`` of each value.
        n: number of samples $N$.
        how: ``"mean"``, ``"max"`` or ``"first"``.

    Returns:
        `(N,)` reduced values in the dtype of ``values``.

    Raises:
        ValueError: unknown ``how``, mismatched shapes or out-of-range owners.
    """
    if how not in _REDUCES:
        raise ValueError(f"reduce must be one of {_REDUCES}, got {how!r}")
    if values.ndim != 1 or owner.shape != values.shape:
        raise ValueError(f"values and owner must be (M,), got {tuple(values.shape)} and {tuple(owner.shape)}")
    if owner.numel() and (int(owner.min()) < 0 or int(owner.max()) >= n):
        raise ValueError(
            f"owner indices must lie in [0, {n}), got range [{int(owner.min())}, {int(owner.max())}]"
        )
    owner = owner.long()
    nan = torch.full((n,), float("nan"), dtype=values.dtype, device=values.device)
    if how == "mean":
        sums = torch.zeros(n, dtype=values.dtype, device=values.device).index_add_(0, owner, values)
        counts = torch.zeros(n, dtype=values.dtype, device=values.device).index_add_(
            0, owner, torch.ones_like(values)
        )
        return torch.where(counts > 0, sums / counts.clamp_min(1), nan)
    if how == "max":
        return nan.scatter_reduce(0, owner, values, reduce="amax", include_self=False)
    m = values.shape[0]
    if m == 0:
        return nan
    positions = torch.arange(m, device=values.device)
    first = torch.full((n,), m, dtype=torch.long, device=values.device)
    first = first.scatter_reduce(0, owner, positions, reduce="amin", include_self=True)
    return torch.where(first < m, values[first.clamp_max(m - 1)], nan)


@dataclass(frozen=True)
class SimilarityConfig:
    r"""What a [`SimilarityReward`][rewardkit.SimilarityReward] compares and how it shapes it.

    Attributes:
        compare: ``"target"`` (the ground-truth target image(s); DyRef) or a reference type
            (``"subject"``, ``"background"``, ``"style"``, ``"lighting"``, ``"pose"``) to
            compare against every reference of that type.
        reduce: ``"mean"``, ``"max"`` or ``"first"`` over the comparison images.
        drs: apply DRS $\sigma(k(n)(s - \tau))$ per comparison image before the reduce.
        tau: DRS threshold $\tau$ (DyRef: 0.65; the reference code's default 0.7).
        k_mode: ``"increase"``, ``"decrease"`` or ``"flat"``.
        k0: DRS base steepness $k_0$.
        k1: DRS steepness per reference $k_1$.
        n_min: $n_{\min}$ of ``"increase"``.
        n_max: $n_{\max}$ of ``"decrease"``.
        scaling: a custom transform ``scaling(similarity, n_refs) -> Tensor`` used instead of
            DRS (same call signature as [`drs_scale`][rewardkit.drs_scale]'s positional part);
            applied per comparison image when set.
    """

    compare: str = "target"
    reduce: Reduce = "mean"
    drs: bool = False
    tau: float = 0.65
    k_mode: str = "increase"
    k0: float = 10.0
    k1: float = 3.0
    n_min: int = 2
    n_max: int = 6
    scaling: RewardScaling | None = None

    def __post_init__(self) -> None:
        if self.compare != "target" and self.compare not in REF_TYPES:
            raise ValueError(f"compare must be 'target' or one of {REF_TYPES}, got {self.compare!r}")
        if self.reduce not in _REDUCES:
            raise ValueError(f"reduce must be one of {_REDUCES}, got {self.reduce!r}")
        if self.drs:
            drs_steepness(2, k_mode=self.k_mode, k0=self.k0, k1=self.k1, n_min=self.n_min, n_max=self.n_max)
        if self.drs and self.scaling is not None:
            raise ValueError("set either drs=True or scaling=..., not both")

    def transform(self) -> RewardScaling | None:
        """The per-comparison transform: DRS with these parameters, ``scaling``, or ``None``."""
        if self.scaling is not None:
            return self.scaling
        if not self.drs:
            return None
        return functools.partial(
            drs_scale,
            tau=self.tau,
            k_mode=self.k_mode,
            k0=self.k0,
            k1=self.k1,
            n_min=self.n_min,
            n_max=self.n_max,
        )


class SimilarityReward:
    """Cosine similarity of encoder features between each generated image and its targets.

    Implements [`RewardModel`][rewardkit.RewardModel]. Distinct comparison images are encoded
    once per call (identity-deduplicated, so a group sharing one target costs one forward).

    Extras:
        ``sim_raw``: `(N,)` the reduced raw cosine (pre-DRS; DAR's difficulty signal).
        ``n_refs``: `(N,)` int64 reference count per sample.

    Args:
        encoder: any [`ImageEncoder`][rewardkit.ImageEncoder].
        config: what to compare and how to reduce / shape.
        name: the reward's name.

    Example:
        >>> import torch, rewardkit
        >>> class Mean:  # a toy encoder: per-channel means
        ...     name = "mean"
        ...     def encode(self, images):
        ...         items = rewardkit.rewards.as_image_list(images)
        ...         return torch.stack([im.mean(dim=(1, 2)) for im in items])
        >>> reward = rewardkit.SimilarityReward(Mean())
        >>> img = torch.rand(3, 8, 8)
        >>> out = reward(img[None], rewardkit.SampleContext(targets=(img,)))
        >>> bool(torch.allclose(out.scores, torch.ones(1))), out.extras["n_refs"].tolist()
        (True, [1])
    """

    def __init__(
        self,
        encoder: ImageEncoder,
        config: SimilarityConfig | None = None,
        *,
        name: str = "image_similarity",
    ) -> None:
        if not isinstance(encoder, ImageEncoder):
            raise TypeError(
                f"encoder must implement ImageEncoder (name, encode), got {type(encoder).__name__}"
            )
        self.encoder = encoder
        self.config = config if config is not None else SimilarityConfig()
        self.name = name

    def __repr__(self) -> str:
        return f"SimilarityReward(name={self.name!r}, encoder={self.encoder.name!r}, config={self.config})"

    def _comparisons(self, ctx: SampleContext) -> Sequence[ImageInput]:
        if self.config.compare == "target":
            items: Sequence[ImageInput] = ctx.targets
        else:
            items = [r.image for r in ctx.refs(self.config.compare)]
        return items[:1] if self.config.reduce == "first" else items

    def __call__(self, images: Images, contexts: SampleContext | Sequence[SampleContext]) -> RewardOutput:
        """Score `N` images; see the class docstring for the extras."""
        generated = as_image_list(images)
        n = len(generated)
        ctxs = as_contexts(contexts, n)
        unique: list[Tensor] = []
        seen: dict[int, int] = {}
        owner: list[int] = []
        which: list[int] = []
        for i, ctx in enumerate(ctxs):
            for j, item in enumerate(self._comparisons(ctx)):
                key = id(item)
                if key not in seen:
                    seen[key] = len(unique)
                    unique.append(as_image(item, name=f"contexts[{i}] {self.config.compare}[{j}]"))
                owner.append(i)
                which.append(seen[key])
        n_refs = torch.tensor([ctx.num_refs for ctx in ctxs], dtype=torch.long)
        if not owner:
            nan = torch.full((n,), float("nan"))
            return RewardOutput(nan, {"sim_raw": nan.clone(), "n_refs": n_refs})
        feats = self.encoder.encode(generated + unique).cpu()
        owner_t, which_t = torch.tensor(owner), torch.tensor(which)
        sims = pairwise_cosine(feats[owner_t], feats[n + which_t])  # (M,) one per comparison
        sim_raw = reduce_per_sample(sims, owner_t, n, self.config.reduce)
        transform = self.config.transform()
        if transform is None:
            scores = sim_raw.clone()
        else:  # DRS per comparison image, *before* the reduce
            shaped = transform(sims, n_refs[owner_t])
            scores = reduce_per_sample(shaped.to(sims.dtype), owner_t, n, self.config.reduce)
        return RewardOutput(scores.float(), {"sim_raw": sim_raw.float(), "n_refs": n_refs})
