import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewardkit.data.pipeline import RecordPlan, compose_prompt, skeleton_image, subject_reference


@given(
    st.integers(8, 40),
    st.integers(8, 40),
    st.data(),
    st.integers(16, 48),
)
def test_subject_reference_keeps_only_masked_target_pixels_on_white(h, w, data, size) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    target = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)  # never pure white: 255 is excluded
    x1, y1 = data.draw(st.integers(0, w - 2)), data.draw(st.integers(0, h - 2))
    x2, y2 = data.draw(st.integers(x1 + 1, w)), data.draw(st.integers(y1 + 1, h))
    mask = np.zeros((h, w), bool)
    mask[y1:y2, x1:x2] = rng.random((y2 - y1, x2 - x1)) < 0.6
    mask[y1, x1] = True
    out = subject_reference(target, (x1, y1, x2, y2), mask, size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    # Every non-white output pixel is a masked target pixel (nearest-neighbour scaling invents none).
    inside = {tuple(p) for p in target[mask]}
    painted = out[(out != 255).any(axis=-1)]
    assert painted.size > 0 and all(tuple(p) in inside for p in painted)
    # The white margin (10 % of the side) stays white.
    border = max(1, int(0.1 * size) - 1)
    assert (out[:border] == 255).all() and (out[-border:] == 255).all()


def test_subject_reference_refuses_empty_inputs() -> None:
    target = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="empty inside a 10×10"):
        subject_reference(target, (5, 5, 5, 8), np.ones((10, 10), bool), 16)
    with pytest.raises(ValueError, match="mask is empty"):
        subject_reference(target, (0, 0, 5, 5), np.zeros((10, 10), bool), 16)
    with pytest.raises(ValueError, match="mask must be"):
        subject_reference(target, (0, 0, 5, 5), np.ones((9, 10), bool), 16)


def test_skeleton_draws_visible_limbs_only() -> None:
    kp = np.zeros((17, 3))
    kp[5] = (10, 10, 1)
    kp[7] = (10, 40, 1)  # one limb: left shoulder → left elbow, a vertical line at x = 10
    image = skeleton_image(kp, 64, width=1.5)
    drawn = (image > 0).any(axis=-1)
    assert drawn[10:40, 9:12].mean() > 0.9 and drawn[:, 30:].sum() == 0
    kp[7, 2] = 0  # the elbow not visible: nothing to draw
    assert skeleton_image(kp, 64).max() == 0
    with pytest.raises(ValueError, match=r"\(17, 3\)"):
        skeleton_image(np.zeros((16, 3)), 64)


@given(
    st.lists(
        st.sampled_from(["a red disc", "an orange star", "the blue ring", "green cube"]),
        min_size=1,
        max_size=7,
    ),
    st.lists(st.sampled_from(["background", "lighting", "pose", "style"]), unique=True, max_size=4),
)
def test_compose_prompt_points_at_every_reference_once_in_order(subjects, types) -> None:
    prompt = compose_prompt(subjects, types, {"background": "meadow", "style": "sepia"})
    numbers = [int(n) for n in re.findall(r"image (\d+)", prompt)]
    assert numbers == list(range(1, len(subjects) + len(types) + 1))
    assert " a " not in prompt.split(" from ")[0]  # articles are replaced by "the"


def test_compose_prompt_refuses_no_subject_and_unknown_types() -> None:
    with pytest.raises(ValueError, match="at least one subject"):
        compose_prompt([], ["background"], {})
    with pytest.raises(ValueError, match="unknown reference type 'mood'"):
        compose_prompt(["a cat"], ["mood"], {})


def test_record_plan_types_follow_the_prompt_order() -> None:
    plan = RecordPlan(0, "subject_pose_bg_style", 6, 1, "train", 64)
    assert plan.types == ("background", "pose", "style") and plan.n_subjects == 3
