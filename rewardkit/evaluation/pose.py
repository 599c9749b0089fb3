"""OmniRef-Bench pose consistency between two COCO-17 keypoint sets (pure numpy)."""

from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["COCO_BONES", "COCO_SIGMAS", "POSE_WEIGHTS", "PoseScore", "pose_consistency"]

#: Per-keypoint OKS constants σ_k (COCO order: nose, eyes L/R, ears L/R, shoulders, elbows,
#: wrists, hips, knees, ankles).
COCO_SIGMAS: Final[NDArray[np.float64]] = np.array(
    [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
     0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089]
)  # fmt: skip

#: The 18 bones whose directions are compared (pairs of COCO keypoint indices).
COCO_BONES: Final[tuple[tuple[int, int], ...]] = (
    (0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (0, 6), (5, 7), (7, 9), (6, 8),
    (8, 10), (5, 6), (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16),
)  # fmt: skip

#: Weights of the overall score.
POSE_WEIGHTS: Final[dict[str, float]] = {"oks": 0.2, "pck_05": 0.2, "pck_02": 0.1, "angle": 0.5}


@dataclass(frozen=True)
class PoseScore:
    r"""Pose agreement scores, each in [0, 1].

    Attributes:
        oks: object keypoint similarity on centred, scale-normalised keypoints.
        pck_05: fraction of keypoints within 0.5 torso lengths.
        pck_02: fraction of keypoints within 0.2 torso lengths.
        angle: mean $(\cos + 1)/2$ of corresponding bone directions.
        overall: $0.2\,\text{oks} + 0.2\,\text{pck}_{0.5} + 0.1\,\text{pck}_{0.2}
            + 0.5\,\text{angle}$.
    """

    oks: float
    pck_05: float
    pck_02: float
    angle: float
    overall: float

    def as_dict(self) -> dict[str, float]:
        """The scores as a plain dict (for JSON reports)."""
        return asdict(self)


def _keypoints(name: str, value: Any) -> NDArray[np.float64]:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (17, 3):
        raise ValueError(
            f"{name} must be COCO-17 keypoints of shape (17, 3) as (x, y, conf), got {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values; mark missing keypoints with conf = 0")
    return array


def _align(kp: NDArray[np.float64], *, faithful: bool) -> NDArray[np.float64]:
    """Centre on the mean keypoint and divide by the bounding-box diagonal.

    The reference uses all 17 points, including undetected ones at (0, 0) (``faithful=True``);
    the default uses only the detected points, so missing joints do not move the pose.
    """
    xy = kp[:, :2]
    used = xy if faithful else xy[kp[:, 2] > 0]
    if used.shape[0] == 0:
        return np.zeros_like(xy)
    diagonal = float(np.linalg.norm(used.max(axis=0) - used.min(axis=0)))
    aligned: NDArray[np.float64] = (xy - used.mean(axis=0)) / (diagonal if diagonal > 0 else 1.0)
    return aligned


def _torso_length(
    raw: tuple[NDArray[np.float64], ...], aligned: tuple[NDArray[np.float64], ...], *, faithful: bool
) -> float:
    """Mean left-shoulder→right-hip length of the aligned poses.

    The reference averages over both poses even when a joint is undetected (its aligned (0, 0)
    then depends on where the pose sits); the default averages over the poses that have both.
    """
    lengths = [
        float(np.linalg.norm(a[5] - a[12]))
        for r, a in zip(raw, aligned, strict=True)
        if faithful or (r[5, 2] > 0 and r[12, 2] > 0)
    ]
    return float(np.mean(lengths)) if lengths else 0.0


def _pck(distances: NDArray[np.float64], visible: NDArray[np.bool_], scale: float, alpha: float) -> float:
    if not visible.any() or scale <= 0:
        return 0.0
    return float(np.mean(distances[visible] / scale < alpha))


def _angle_similarity(kp1: NDArray[np.float64], kp2: NDArray[np.float64]) -> float:
    bones = np.array(COCO_BONES)
    start, end = bones[:, 0], bones[:, 1]
    v1 = kp1[end, :2] - kp1[start, :2]
    v2 = kp2[end, :2] - kp2[start, :2]
    n1, n2 = np.linalg.norm(v1, axis=1), np.linalg.norm(v2, axis=1)
    seen = (kp1[start, 2] > 0) & (kp1[end, 2] > 0) & (kp2[start, 2] > 0) & (kp2[end, 2] > 0)
    counted = seen & (n1 > 0) & (n2 > 0)
    if not counted.any():
        return 0.0
    cos = np.sum(v1[counted] * v2[counted], axis=1) / (n1[counted] * n2[counted])
    return float(np.mean((np.clip(cos, -1.0, 1.0) + 1.0) / 2.0))


def pose_consistency(kp_generated: Any, kp_reference: Any, *, faithful: bool = False) -> PoseScore:
    r"""OmniRef-Bench pose consistency of a generated pose against the pose reference.

    Each pose is centred on its mean keypoint and divided by its bounding-box diagonal
    ($\hat p$). With $d_k = \lVert \hat p^{gen}_k - \hat p^{ref}_k\rVert$, $V$ the keypoints with
    positive confidence in both poses, and $\ell$ the torso length (left shoulder to right hip,
    averaged over the two aligned poses):

    $$
    \text{OKS} = \frac{1}{|V|}\sum_{k\in V} e^{-d_k^2 / (2\sigma_k^2)},\qquad
    \text{PCK}_\alpha = \frac{1}{|V|}\sum_{k\in V} [\,d_k / \ell < \alpha\,],\qquad
    \text{angle} = \operatorname{mean}_{b} \frac{\cos\angle(u^{gen}_b, u^{ref}_b) + 1}{2}
    $$

    over the 18 COCO bones $b$ seen in both poses (raw coordinates), and
    $\text{overall} = 0.2\,\text{OKS} + 0.2\,\text{PCK}_{0.5} + 0.1\,\text{PCK}_{0.2} + 0.5\,\text{angle}$.
    Every term is 0 when nothing is comparable. The OKS uses $\sigma_k^2$ and unit scale (the
    reference's definition), not COCO's $(2\sigma_k)^2$ and object area.

    Args:
        kp_generated: `(17, 3)` keypoints $(x, y, \text{conf})$ detected in the generated image.
        kp_reference: `(17, 3)` keypoints of the pose reference.
        faithful: align with all 17 points, undetected (0, 0) ones included, as the reference
            script does. The default aligns on the detected points only.

    Returns:
        A [`PoseScore`][rewardkit.PoseScore] with every score in [0, 1]; symmetric in its
        arguments, and invariant to translating or uniformly scaling either pose.

    Raises:
        ValueError: keypoints not of shape (17, 3) or not finite.

    Example:
        >>> import numpy as np, rewardkit
        >>> kp = np.c_[np.random.default_rng(0).random((17, 2)) * 100, np.ones(17)]
        >>> rewardkit.pose_consistency(kp * [2, 2, 1] + [5, 5, 0], kp).overall
        1.0

    References:
        DyRef / OmniRef-Bench evaluation, ``pose_consistency_eval.py``
        (``PoseConsistencyEvaluator.comprehensive_evaluation``); COCO keypoint sigmas.
    """
    gen, ref = _keypoints("kp_generated", kp_generated), _keypoints("kp_reference", kp_reference)
    visible = (gen[:, 2] > 0) & (ref[:, 2] > 0)
    aligned_gen, aligned_ref = _align(gen, faithful=faithful), _align(ref, faithful=faithful)
    distances = np.linalg.norm(aligned_gen - aligned_ref, axis=1)

    oks = (
        float(np.mean(np.exp(-(distances[visible] ** 2) / (2 * COCO_SIGMAS[visible] ** 2))))
        if visible.any()
        else 0.0
    )
    torso = _torso_length((gen, ref), (aligned_gen, aligned_ref), faithful=faithful)
    scores = {
        "oks": oks,
        "pck_05": _pck(distances, visible, torso, 0.5),
        "pck_02": _pck(distances, visible, torso, 0.2),
        "angle": _angle_similarity(gen, ref),
    }
    overall = sum(POSE_WEIGHTS[k] * v for k, v in scores.items())
    return PoseScore(**scores, overall=float(overall))
