"""The reward contract: per-sample context in, `(N,)` scores plus named extras out.

A reward is any callable matching [`RewardModel`][rewardkit.RewardModel]: it takes a batch of
generated images and one [`SampleContext`][rewardkit.SampleContext] per image and returns a
[`RewardOutput`][rewardkit.RewardOutput]. NaN in ``scores`` means *the reward does not apply to
this sample* (e.g. a style score without a style reference); [`gdpo_advantages`][rewardkit.gdpo_advantages]
then gives that reward a zero advantage for the sample instead of imputing a value.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeAlias, get_args, runtime_checkable

import torch
from torch import Tensor

from rewardkit.rewards._images import ImageInput, Images

__all__ = [
    "REF_TYPES",
    "Images",
    "RefType",
    "Reference",
    "RewardModel",
    "RewardOutput",
    "SampleContext",
    "as_contexts",
]

#: The reference-image types of multi-reference generation (OmniRef-Bench's five).
RefType: TypeAlias = Literal["subject", "background", "style", "lighting", "pose"]
REF_TYPES: tuple[str, ...] = get_args(RefType)


@dataclass(frozen=True)
class Reference:
    """One reference (condition) image with its type.

    Attributes:
        image: the image: a `(3, H, W)` tensor in ``[0, 1]`` (or ``uint8``) or a PIL image.
        kind: what the reference controls: ``"subject"``, ``"background"``, ``"style"``,
            ``"lighting"`` or ``"pose"``.
        name: optional label, e.g. the subject's name ("a wild rabbit").
        is_face: the reference shows a person's face (seed 004's Weighted-Ref-VIEScore scores
            face sources with a face-embedding similarity instead of a VLM yes/no).
    """

    image: ImageInput
    kind: RefType = "subject"
    name: str = ""
    is_face: bool = False

    def __post_init__(self) -> None:
        if self.kind not in REF_TYPES:
            raise ValueError(f"Reference.kind must be one of {REF_TYPES}, got {self.kind!r}")


@dataclass(frozen=True)
class SampleContext:
    """Everything a reward may need about one generated sample besides the image itself.

    Attributes:
        prompt: the instruction / text prompt.
        targets: ground-truth target image(s) (DyRef's similarity reward compares against
            these, *not* against the references).
        references: the reference images in prompt order, each with its type.
        n_refs: number of references the sample was generated from; ``None`` means
            ``len(references)``, or ``len(targets)`` when there are no references (the
            reference code's fallback).
        metadata: free-form extra fields (benchmark category, instance index, ...).
    """

    prompt: str = ""
    targets: tuple[ImageInput, ...] = ()
    references: tuple[Reference, ...] = ()
    n_refs: int | None = None
    metadata: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Accept lists for convenience but store tuples (the dataclass is frozen and hashable-ish).
        targets: object = self.targets
        if not isinstance(targets, tuple):
            if not isinstance(targets, Sequence) or isinstance(targets, Tensor | str):
                raise TypeError(
                    "SampleContext.targets must be a sequence of images (wrap one image as (img,)), "
                    f"got {type(targets).__name__}"
                )
            object.__setattr__(self, "targets", tuple(targets))
        references: object = self.references
        if not isinstance(references, tuple):
            if not isinstance(references, Sequence) or isinstance(references, str):
                raise TypeError(
                    "SampleContext.references must be a sequence of Reference, got "
                    f"{type(references).__name__}"
                )
            object.__setattr__(self, "references", tuple(references))
        for i, ref in enumerate(self.references):
            if not isinstance(ref, Reference):
                raise TypeError(
                    f"SampleContext.references[{i}] must be a rewardkit.Reference(image, kind), "
                    f"got {type(ref).__name__}"
                )
        if self.n_refs is not None and (
            isinstance(self.n_refs, bool) or not isinstance(self.n_refs, int) or self.n_refs < 0
        ):
            raise ValueError(f"SampleContext.n_refs must be an int >= 0 or None, got {self.n_refs!r}")

    @property
    def num_refs(self) -> int:
        """The reference count $n$ used by DRS: ``n_refs``, else the references, else the targets."""
        if self.n_refs is not None:
            return self.n_refs
        return len(self.references) if self.references else len(self.targets)

    def refs(self, kind: str) -> tuple[Reference, ...]:
        """The references of one type, in order."""
        if kind not in REF_TYPES:
            raise ValueError(f"kind must be one of {REF_TYPES}, got {kind!r}")
        return tuple(r for r in self.references if r.kind == kind)

    def kinds(self) -> frozenset[str]:
        """The set of reference types present."""
        return frozenset(r.kind for r in self.references)


@dataclass(frozen=True)
class RewardOutput:
    """What a reward returns for a batch of `N` samples.

    Attributes:
        scores: `(N,)` float reward per sample; NaN where the reward does not apply.
        extras: named `(N,)` (or `(N, ...)`) tensors, e.g. ``sim_raw`` (the pre-DRS similarity
            that DAR uses as its difficulty signal) and ``n_refs``.
    """

    scores: Tensor
    extras: Mapping[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (
            not isinstance(self.scores, Tensor)
            or not self.scores.is_floating_point()
            or self.scores.ndim != 1
        ):
            shape = (
                tuple(self.scores.shape) if isinstance(self.scores, Tensor) else type(self.scores).__name__
            )
            raise ValueError(f"RewardOutput.scores must be a 1-D float tensor (N,), got {shape}")
        n = self.scores.shape[0]
        for key, value in self.extras.items():
            if not isinstance(value, Tensor) or value.ndim < 1 or value.shape[0] != n:
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(
                    f"RewardOutput.extras[{key!r}] must be a tensor with leading dim {n}, got {shape}"
                )


@runtime_checkable
class RewardModel(Protocol):
    """A batched reward: generated images plus per-sample context → scores and extras.

    Implementations are plain classes (no base class needed). ``images`` is an
    `(N, 3, H, W)` tensor in ``[0, 1]`` or a sequence of `N` images (tensors or PIL);
    ``contexts`` holds one [`SampleContext`][rewardkit.SampleContext] per image (a single
    context is broadcast to all images).
    """

    name: str

    def __call__(self, images: Images, contexts: "SampleContext | Sequence[SampleContext]") -> RewardOutput:
        """Score the batch; see [`RewardOutput`][rewardkit.RewardOutput]."""
        ...


def as_contexts(contexts: object, n: int) -> list[SampleContext]:
    """Return one context per image: broadcast a single context, check a sequence's length.

    Raises:
        TypeError: not a SampleContext or a sequence of them.
        ValueError: a sequence whose length differs from the number of images.
    """
    if isinstance(contexts, SampleContext):
        return [contexts] * n
    if not isinstance(contexts, Sequence) or isinstance(contexts, str):
        raise TypeError(
            f"contexts must be a SampleContext or a sequence of them, got {type(contexts).__name__}"
        )
    out = list(contexts)
    if len(out) != n:
        raise ValueError(f"got {len(out)} contexts for {n} images; pass one SampleContext per image")
    for i, ctx in enumerate(out):
        if not isinstance(ctx, SampleContext):
            raise TypeError(f"contexts[{i}] must be a rewardkit.SampleContext, got {type(ctx).__name__}")
    return out


def nan_scores(n: int) -> Tensor:
    """`(n,)` float32 NaN: the score of samples a reward does not apply to."""
    return torch.full((n,), float("nan"))
