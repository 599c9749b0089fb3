import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewardkit.data.pipeline import DataRecord, RecordImages, SceneSpec, Subject
from rewardkit.data.pipeline.filters import DistinctReferences, MinSubjectArea, SubjectsFound
from rewardkit.data.pipeline.procedural import ColourSegmenter
from rewardkit.data.pipeline.steps import RecordPlan

PLAN = RecordPlan(0, "subject", 2, 0, "train", 32)


def _record(n: int) -> DataRecord:
    return DataRecord(
        0, "train", "subject", n, SceneSpec(tuple(Subject(f"a thing {i}") for i in range(n)), "")
    )


def _images(masks, refs=None) -> RecordImages:
    target = np.zeros((32, 32, 3), np.uint8)
    return RecordImages(target, tuple(refs or []), tuple(masks))


@given(st.lists(st.integers(0, 200), min_size=1, max_size=5), st.floats(0, 0.2))
def test_min_subject_area_keeps_exactly_when_the_smallest_subject_is_large_enough(areas, threshold) -> None:
    masks = []
    for area in areas:
        mask = np.zeros((32, 32), bool)
        mask.reshape(-1)[:area] = True
        masks.append(mask)
    verdict = MinSubjectArea(threshold).check(_record(len(areas)), _images(masks))
    assert verdict.score == pytest.approx(min(areas) / 1024)
    assert verdict.keep == (min(areas) / 1024 >= threshold)
    assert (verdict.reason == "") == verdict.keep


def test_subjects_found_names_the_missing_subject() -> None:
    full = np.ones((32, 32), bool)
    verdict = SubjectsFound().check(_record(3), _images([full, None, np.zeros((32, 32), bool)]))
    assert not verdict.keep and verdict.score == pytest.approx(1 / 3)
    assert verdict.reason == "not found in the target: a thing 1, a thing 2"
    assert SubjectsFound().check(_record(1), _images([full])).keep


def test_distinct_references_drops_an_edit_that_did_nothing() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    same = DistinctReferences().check(_record(1), _images([], [a, b, a.copy()]))
    assert not same.keep and same.score == 0 and same.reason == "images 1 and 3 are near-identical"
    assert DistinctReferences().check(_record(1), _images([], [a, b])).keep
    with pytest.raises(ValueError, match="min_rms"):
        DistinctReferences(-1)
    with pytest.raises(ValueError, match="min_fraction"):
        MinSubjectArea(1.0)


@given(st.integers(2, 12), st.integers(2, 12), st.integers(0, 255), st.integers(0, 255))
def test_colour_segmenter_finds_a_flat_square_on_a_flat_background(x, y, bg, fg) -> None:
    image = np.full((32, 32, 3), bg, np.uint8)
    image[y : y + 10, x : x + 10] = fg
    (mask,) = ColourSegmenter(24).masks(image, [(x, y, x + 10, y + 10)], plan=PLAN)
    if abs(fg - bg) > 24:
        assert mask[y : y + 10, x : x + 10].all() and mask.sum() == 100
    else:
        assert not mask.any()
