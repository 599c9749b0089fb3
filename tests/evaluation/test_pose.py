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


# --------------------------------------------------------------------------- faithful test vectors


def _script_pose(kp_gen: np.ndarray, kp_ref: np.ndarray) -> float:
    """``comprehensive_evaluation`` as the protocol spells it, in plain float64 loops."""

    def align(kp: np.ndarray) -> list[tuple[float, float]]:
        xs, ys = [p[0] for p in kp], [p[1] for p in kp]  # all 17 points, (0, 0) ones included
        cx, cy = sum(xs) / 17, sum(ys) / 17
        diag = math.hypot(max(xs) - min(xs), max(ys) - min(ys))
        return [((x - cx) / diag, (y - cy) / diag) for x, y in zip(xs, ys, strict=True)]

    a, b = align(kp_gen), align(kp_ref)
    vis = [k for k in range(17) if kp_gen[k][2] > 0 and kp_ref[k][2] > 0]
    d = [math.hypot(a[k][0] - b[k][0], a[k][1] - b[k][1]) for k in range(17)]
    oks = sum(math.exp(-(d[k] ** 2) / (2 * COCO_SIGMAS[k] ** 2)) for k in vis) / len(vis) if vis else 0.0
    scale = (
        math.hypot(a[5][0] - a[12][0], a[5][1] - a[12][1])
        + math.hypot(b[5][0] - b[12][0], b[5][1] - b[12][1])
    ) / 2

    def pck(alpha: float) -> float:
        return sum(d[k] / scale < alpha for k in vis) / len(vis) if vis and scale > 0 else 0.0

    sims = []
    for s, e in rewardkit.evaluation.pose.COCO_BONES:
        if min(kp_gen[s][2], kp_gen[e][2], kp_ref[s][2], kp_ref[e][2]) <= 0:
            continue
        u = (kp_gen[e][0] - kp_gen[s][0], kp_gen[e][1] - kp_gen[s][1])
        v = (kp_ref[e][0] - kp_ref[s][0], kp_ref[e][1] - kp_ref[s][1])
        nu, nv = math.hypot(*u), math.hypot(*v)
        if nu == 0 or nv == 0:
            continue
        c = max(-1.0, min(1.0, (u[0] * v[0] + u[1] * v[1]) / (nu * nv)))
        sims.append((c + 1) / 2)
    angle = sum(sims) / len(sims) if sims else 0.0
    return 0.2 * oks + 0.2 * pck(0.5) + 0.1 * pck(0.2) + 0.5 * angle


def _pose_vector(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = with_conf(STANDING * rng.uniform(0.5, 3.0) + rng.uniform(0, 400, 2), 0.9)
    gen = with_conf(STANDING + rng.normal(0, 4, (17, 2)) + rng.uniform(0, 400, 2), 0.8)
    if kind == "random":
        gen = np.c_[rng.uniform(0, 300, (17, 2)), rng.uniform(0.05, 1, 17)]
    elif kind == "missing":  # undetected joints sit at (0, 0) with conf 0, as the decoder writes them
        gen[rng.random(17) < 0.3] = 0.0
        ref[rng.random(17) < 0.2] = 0.0
    elif kind == "torso_missing":
        gen[[5, 12]] = 0.0
    elif kind == "one_pixel":
        gen = ref.copy()
        gen[rng.integers(17), rng.integers(2)] += 1.0
    elif kind == "one_visible":
        gen[1:] = 0.0
    elif kind != "noisy":
        raise AssertionError(kind)
    return gen, ref


@pytest.mark.parametrize("kind", ["noisy", "random", "missing", "torso_missing", "one_pixel", "one_visible"])
@pytest.mark.parametrize("seed", range(5))
def test_faithful_mode_is_the_scripts_formula(kind: str, seed: int) -> None:
    gen, ref = _pose_vector(kind, seed)
    assert rewardkit.pose_consistency(gen, ref, faithful=True).overall == pytest.approx(
        _script_pose(gen, ref), abs=1e-9
    )
