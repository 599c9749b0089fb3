import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewardkit.data import CATEGORIES, make_instance, write_omniref_mini
from rewardkit.data.omniref_mini import COLOURS
from rewardkit.evaluation import load_benchmark, load_keypoints

PAIRS = [(c, n) for c, counts in CATEGORIES.items() for n in counts]


@given(st.sampled_from(PAIRS), st.integers(0, 2**32 - 1))
def test_instance_structure_matches_its_category(pair, seed) -> None:
    category, n_refs = pair
    inst = make_instance(category, n_refs, np.random.default_rng(seed), size=32)
    kinds = [k for k, _, _ in inst.references]
    assert len(kinds) == n_refs
    expected_other = {"bg": "background", "style": "style", "lighting": "lighting", "pose": "pose"}
    assert sorted(set(kinds) - {"subject"}) == sorted(expected_other[t] for t in category.split("_")[1:])
    assert kinds.count("subject") == len(inst.subject_boxes) >= 1
    # The prompt points at every reference exactly once, by its 1-based slot.
    assert sorted(int(n) for n in re.findall(r"image (\d+)", inst.prompt)) == list(range(1, n_refs + 1))
    assert inst.target.shape == (32, 32, 3) and inst.target.min() >= 0 and inst.target.max() <= 1
    assert (inst.pose_keypoints is not None) == ("pose" in category)


def test_same_seed_same_instance_and_different_seed_differs() -> None:
    a = make_instance("subject_bg_style", 5, np.random.default_rng(3), size=48)
    b = make_instance("subject_bg_style", 5, np.random.default_rng(3), size=48)
    c = make_instance("subject_bg_style", 5, np.random.default_rng(4), size=48)
    assert a.prompt == b.prompt and np.array_equal(a.target, b.target)
    assert not np.array_equal(a.target, c.target)


def test_subject_boxes_hold_the_subject_colour() -> None:
    inst = make_instance("subject", 4, np.random.default_rng(0), size=64)
    for (kind, name, _), (x1, y1, x2, y2) in zip(inst.references, inst.subject_boxes, strict=True):
        assert kind == "subject"
        colour = np.array(COLOURS[name.split()[1]])
        crop = inst.target[y1:y2, x1:x2].reshape(-1, 3)
        # Plain and patterned subjects both show their colour (or its darker shade) inside the box.
        close = np.abs(crop - colour).max(axis=1) < 0.02
        shade = np.abs(crop - 0.45 * colour).max(axis=1) < 0.02
        assert (close | shade).mean() > 0.3


def test_written_splits_load_and_carry_ground_truth(tmp_path: Path) -> None:
    paths = write_omniref_mini(tmp_path, n_train=len(PAIRS), n_test=6, seed=1, size=32)
    train = load_benchmark(paths["train"], check_files=True)
    assert {(i.category, i.n_refs) for i in train} == set(PAIRS)  # every combination covered
    test = load_benchmark(paths["test"], check_files=True)
    truth = json.loads((tmp_path / "test" / "ground_truth.json").read_text())
    for inst in test:
        gt = truth[str(inst.index)]
        assert len(gt["subject_boxes"]) == len(inst.references_of("subject"))
        if inst.applies("pose"):
            kp = load_keypoints(test.resolve(inst.references_of("pose")[0].keypoints_path))
            np.testing.assert_allclose(kp, np.array(gt["pose_keypoints"]))
    again = tmp_path / "again"
    write_omniref_mini(again, n_train=len(PAIRS), n_test=6, seed=1, size=32)
    assert (again / "test" / "metadata.json").read_text() == paths["test"].read_text()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("subject_colour", 3), "category must be one of"),
        (("subject_pose_bg_style", 3), "needs at least 4 references"),
    ],
)
def test_bad_arguments(args, match) -> None:
    with pytest.raises(ValueError, match=match):
        make_instance(*args, np.random.default_rng(0))
    with pytest.raises(ValueError, match="size must be >= 32"):
        make_instance("subject", 2, np.random.default_rng(0), size=16)


@given(st.sampled_from(PAIRS), st.integers(0, 2**32 - 1))
def test_subjects_are_laid_out_in_prompt_order(pair, seed) -> None:
    """Subject k takes the k-th grid cell in reading order: the layout follows from the prompt."""
    category, n_refs = pair
    inst = make_instance(category, n_refs, np.random.default_rng(seed), size=64)
    centres = [((x1 + x2) / 2, (y1 + y2) / 2) for x1, y1, x2, y2 in inst.subject_boxes]
    for (xa, ya), (xb, yb) in itertools.pairwise(centres):
        # the next subject is on a lower row, or on the same row further right (rows are
        # >= 21 px apart at 64 px; jitter and shape offsets move a centre by < 7 px)
        assert yb > ya + 13.5 or (abs(yb - ya) <= 13.5 and xb > xa)


@pytest.mark.parametrize("category", ["subject_lighting", "subject_pose_lighting"])
@pytest.mark.parametrize("seed", range(4))
def test_lighting_metric_prefers_the_target_to_wrong_light_dim_and_constant_images(category, seed) -> None:
    # The lighting reference is what the metric compares against: the ground-truth target
    # must beat the same scene under the mirrored light, a dimmed copy and flat images, or a
    # model gains lighting score by moving away from the target.
    pytest.importorskip("cv2")
    from rewardkit.evaluation.lighting import lighting_consistency

    inst = make_instance(category, CATEGORIES[category][0], np.random.default_rng(seed), size=64)
    reference = next(image for kind, _, image in inst.references if kind == "lighting")
    target = inst.target
    rivals = {
        "mirrored light": target[::-1, ::-1],
        "dimmed": 0.6 * target,
        "grey": np.full_like(target, 0.5),
        "white": np.ones_like(target),
        "black": np.zeros_like(target),
    }

    def score(image: np.ndarray) -> float:
        as_uint8 = lambda a: np.ascontiguousarray(np.round(a * 255).astype(np.uint8))  # noqa: E731
        return lighting_consistency(as_uint8(reference), as_uint8(image), size=128).total

    best = score(target)
    for name, image in rivals.items():
        assert score(image) < best, name
