import math

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

import rewardkit
from rewardkit.evaluation.pose import COCO_SIGMAS


def poses(missing: bool = True) -> st.SearchStrategy[np.ndarray]:
    def build(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        kp = np.c_[rng.uniform(0, 200, (17, 2)), rng.uniform(0.1, 1.0, 17)]
        if missing:
            gone = rng.random(17) < 0.2
            kp[gone] = 0.0
        return kp

    return st.integers(0, 2**32 - 1).map(build)


STANDING = np.array(
    [[50, 10], [47, 8], [53, 8], [44, 10], [56, 10], [40, 25], [60, 25], [35, 40], [65, 40],
     [33, 55], [67, 55], [43, 60], [57, 60], [42, 80], [58, 80], [41, 100], [59, 100]], dtype=float
)  # fmt: skip


def with_conf(xy: np.ndarray, conf: float = 1.0) -> np.ndarray:
    return np.c_[xy, np.full(17, conf)]


def test_identical_pose_scores_one() -> None:
    score = rewardkit.pose_consistency(with_conf(STANDING), with_conf(STANDING))
    assert score.as_dict() == {"oks": 1.0, "pck_05": 1.0, "pck_02": 1.0, "angle": 1.0, "overall": 1.0}


def test_one_moved_keypoint_by_hand() -> None:
    ref = with_conf(STANDING)
    gen = ref.copy()
    gen[9, 0] -= 10.0  # left wrist moves 10 px left
    score = rewardkit.pose_consistency(gen, ref)

    def align(kp: np.ndarray) -> np.ndarray:
        xy = kp[:, :2]
        return (xy - xy.mean(0)) / np.linalg.norm(xy.max(0) - xy.min(0))

    d = np.linalg.norm(align(gen) - align(ref), axis=1)
    assert score.oks == pytest.approx(np.mean(np.exp(-(d**2) / (2 * COCO_SIGMAS**2))), rel=1e-12)
    torso = 0.5 * (
        np.linalg.norm(align(gen)[5] - align(gen)[12]) + np.linalg.norm(align(ref)[5] - align(ref)[12])
    )
    assert score.pck_05 == pytest.approx(np.mean(d / torso < 0.5))
    # Only the left-forearm bone (7, 9) turns: cos of the angle between (-2, 15) and (-12, 15).
    cos = (-2 * -12 + 15 * 15) / (math.hypot(-2, 15) * math.hypot(-12, 15))
    assert score.angle == pytest.approx((17 + (cos + 1) / 2) / 18, rel=1e-12)
    assert score.overall == pytest.approx(
        0.2 * score.oks + 0.2 * score.pck_05 + 0.1 * score.pck_02 + 0.5 * score.angle
    )


@given(poses(), poses(), st.booleans())
def test_symmetric_and_in_unit_interval(a: np.ndarray, b: np.ndarray, faithful: bool) -> None:
    ab = rewardkit.pose_consistency(a, b, faithful=faithful)
    ba = rewardkit.pose_consistency(b, a, faithful=faithful)
    for x, y in zip(ab.as_dict().values(), ba.as_dict().values(), strict=True):
        assert x == pytest.approx(y, abs=1e-12)
        assert 0.0 <= x <= 1.0


@given(poses(), st.floats(0.2, 5.0), st.floats(-300, 300), st.floats(-300, 300))
def test_default_mode_invariant_to_translation_and_scale(
    kp: np.ndarray, scale: float, dx: float, dy: float
) -> None:
    moved = kp.copy()
    seen = kp[:, 2] > 0
    moved[seen, :2] = kp[seen, :2] * scale + [dx, dy]
    ref = with_conf(STANDING)
    a, b = rewardkit.pose_consistency(moved, ref), rewardkit.pose_consistency(kp, ref)
    for x, y in zip(a.as_dict().values(), b.as_dict().values(), strict=True):
        assert x == pytest.approx(y, abs=1e-9)


def test_faithful_mode_lets_missing_joints_pull_the_alignment() -> None:
    ref = with_conf(STANDING)
    gen = ref.copy()
    gen[15:] = 0.0  # ankles not detected
    shifted = gen.copy()
    shifted[:15, :2] += 500.0
    fixed = [rewardkit.pose_consistency(g, ref).oks for g in (gen, shifted)]
    faithful = [rewardkit.pose_consistency(g, ref, faithful=True).oks for g in (gen, shifted)]
    assert fixed[0] == pytest.approx(fixed[1])
    assert faithful[0] != pytest.approx(faithful[1], abs=1e-3)


@given(st.floats(0.0, 40.0))
def test_perturbation_degrades_monotonically(noise: float) -> None:
    rng = np.random.default_rng(0)
    direction = rng.normal(size=(17, 2))
    ref = with_conf(STANDING)
    small = rewardkit.pose_consistency(with_conf(STANDING + noise * direction), ref)
    large = rewardkit.pose_consistency(with_conf(STANDING + (noise + 5.0) * direction), ref)
    assert large.oks <= small.oks + 1e-12


def test_nothing_comparable_scores_zero() -> None:
    empty = np.zeros((17, 3))
    assert rewardkit.pose_consistency(empty, with_conf(STANDING)).overall == 0.0


@pytest.mark.parametrize("bad", [np.zeros((16, 3)), np.zeros((17, 2)), np.full((17, 3), np.nan)])
def test_bad_keypoints(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="kp_generated"):
        rewardkit.pose_consistency(bad, with_conf(STANDING))
