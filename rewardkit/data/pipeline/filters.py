"""Record filters (stage 6): model-free checks, and any rewardkit reward as a threshold filter.

[`RewardFilter`][rewardkit.data.pipeline.filters.RewardFilter] scores the *target* as if it
were a generated image, with the record's prompt and typed references — so the MLLM judges
(``omniref_judge``, ``dual_ref_yes_no``) and the similarity rewards of
`rewardkit.rewards` filter records the way they score generations.
"""

from typing import Any

import numpy as np

from rewardkit.data.pipeline.record import DataRecord
from rewardkit.data.pipeline.steps import FilterResult, RecordImages

__all__ = ["DistinctReferences", "LightingMatch", "MinSubjectArea", "RewardFilter", "SubjectsFound"]


class SubjectsFound:
    """Drops a record where the grounder or segmenter missed a subject.

    Score: the fraction of subjects with a box and a non-empty mask.
    """

    name = "subjects_found"

    def check(self, record: DataRecord, images: RecordImages) -> FilterResult:
        """The verdict on one record."""
        found = [m is not None and bool(m.any()) for m in images.masks]
        score = sum(found) / max(1, len(found))
        missing = [record.spec.subjects[i].name for i, ok in enumerate(found) if not ok]
        return FilterResult(
            score, not missing, f"not found in the target: {', '.join(missing)}" if missing else ""
        )


class MinSubjectArea:
    """Drops a record whose smallest subject covers less than ``min_fraction`` of the target.

    Args:
        min_fraction: smallest accepted mask area over the image area (a crop that small makes
            a reference of a few pixels).
    """

    name = "min_subject_area"

    def __init__(self, min_fraction: float = 0.002) -> None:
        if not 0 <= min_fraction < 1:
            raise ValueError(f"min_fraction must be in [0, 1), got {min_fraction}")
        self.min_fraction = float(min_fraction)

    def check(self, record: DataRecord, images: RecordImages) -> FilterResult:
        """The verdict on one record."""
        area = images.target.shape[0] * images.target.shape[1]
        fractions = [0.0 if m is None else float(m.sum()) / area for m in images.masks]
        smallest = min(fractions, default=0.0)
        keep = smallest >= self.min_fraction
        return FilterResult(
            smallest, keep, "" if keep else f"smallest subject covers {smallest:.4f} < {self.min_fraction}"
        )


class DistinctReferences:
    """Drops a record with two near-identical references (an edit that did nothing).

    Args:
        min_rms: smallest accepted RMS distance (0–1 scale) between two same-size references.
    """

    name = "distinct_references"

    def __init__(self, min_rms: float = 0.02) -> None:
        if not min_rms >= 0:
            raise ValueError(f"min_rms must be >= 0, got {min_rms}")
        self.min_rms = float(min_rms)

    def check(self, record: DataRecord, images: RecordImages) -> FilterResult:
        """The verdict on one record."""
        refs = [r.astype(np.float64) / 255 for r in images.references]
        closest = float("inf")
        pair = (0, 0)
        for i in range(len(refs)):
            for j in range(i + 1, len(refs)):
                if refs[i].shape == refs[j].shape:
                    rms = float(np.sqrt(np.mean((refs[i] - refs[j]) ** 2)))
                    if rms < closest:
                        closest, pair = rms, (i + 1, j + 1)
        keep = closest >= self.min_rms
        score = closest if np.isfinite(closest) else 1.0
        return FilterResult(score, keep, "" if keep else f"images {pair[0]} and {pair[1]} are near-identical")


_REWARD_KINDS = {"subject": "subject", "background": "background", "lighting": "lighting", "style": "style"}


class RewardFilter:
    """Keeps a record whose target scores at least ``min_score`` under a reward.

    Args:
        reward: a reward name from [`list_rewards`][rewardkit.rewards.registry.list_rewards]
            (built with ``options``) or a reward object (``reward(images, contexts)``).
        min_score: the smallest accepted score (NaN — the reward does not apply or failed —
            drops the record).
        name: the filter's name in scores and summaries (default ``"reward:<reward>"``).
        **options: the reward's options (e.g. ``base_url``, ``model`` for a judge).
    """

    def __init__(self, reward: Any, *, min_score: float, name: str | None = None, **options: Any) -> None:
        if isinstance(reward, str):
            from rewardkit.rewards.registry import load_reward

            label = reward
            reward = load_reward(reward, **options)
        else:
            label = getattr(reward, "name", type(reward).__name__)
        self.reward = reward
        self.min_score = float(min_score)
        self.name = name or f"reward:{label}"

    def check(self, record: DataRecord, images: RecordImages) -> FilterResult:
        """Score the target with the record's prompt and references."""
        import torch

        from rewardkit.rewards.protocol import Reference, SampleContext

        def tensor(image: Any) -> torch.Tensor:
            return torch.from_numpy(np.array(image, dtype=np.float32) / 255).permute(2, 0, 1)

        references = tuple(
            Reference(tensor(image), _REWARD_KINDS.get(ref.kind, "pose"), ref.name)  # type: ignore[arg-type]
            for ref, image in zip(record.references, images.references, strict=True)
        )
        context = SampleContext(prompt=record.prompt, targets=(tensor(images.target),), references=references)
        score = float(self.reward(tensor(images.target)[None], [context]).scores[0])
        keep = bool(np.isfinite(score) and score >= self.min_score)
        reason = "" if keep else f"{self.name} scored {score:.4g} < {self.min_score}"
        return FilterResult(score, keep, reason)


class LightingMatch:
    """Drops a record whose target is not lit like its lighting reference.

    Scores [`lighting_consistency`][rewardkit.evaluation.lighting.lighting_consistency] (the
    OmniRef-Bench metric) between the lighting reference and the target; records without a
    lighting reference score 1 and stay.

    Args:
        min_score: smallest accepted total (0–1).
        size: side both images are resized to (the protocol uses 512).
    """

    name = "lighting_match"

    def __init__(self, min_score: float = 0.6, size: int = 512) -> None:
        if not 0 <= min_score <= 1:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        self.min_score, self.size = float(min_score), int(size)

    def check(self, record: DataRecord, images: RecordImages) -> FilterResult:
        """The verdict on one record."""
        from rewardkit.evaluation.lighting import lighting_consistency

        lit = [
            image
            for ref, image in zip(record.references, images.references, strict=True)
            if ref.kind == "lighting"
        ]
        if not lit:
            return FilterResult(1.0, True)
        score = lighting_consistency(lit[0], images.target, size=self.size).total
        keep = score >= self.min_score
        return FilterResult(
            score, keep, "" if keep else f"lit unlike its reference ({score:.3f} < {self.min_score})"
        )
