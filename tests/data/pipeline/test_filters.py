import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewardkit.data.pipeline import DataRecord, FilterResult, RecordImages, SceneSpec, Subject
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


class _Recorder:
    """A reward that returns a fixed score and keeps what it was asked."""

    name = "recorder"

    def __init__(self, score: float) -> None:
        self.score, self.calls = score, []

    def __call__(self, images, contexts):
        import torch

        from rewardkit.rewards.protocol import RewardOutput

        self.calls.append((images, contexts))
        return RewardOutput(torch.full((len(contexts),), self.score))


def _built_record(tmp_path):
    from rewardkit.data.pipeline import make_record, plan_records
    from rewardkit.data.pipeline.config import DataConfig, build_providers

    plan = plan_records(1, categories={"subject_bg": [3]}, seed=1, size=32)[0]
    providers = build_providers(DataConfig(filters=[]))
    record = make_record(plan, providers, tmp_path)
    from PIL import Image

    target = np.asarray(Image.open(tmp_path / record.target))
    refs = tuple(np.asarray(Image.open(tmp_path / r.path)) for r in record.references)
    return record, RecordImages(target, refs, ())


@pytest.mark.parametrize(("score", "keep"), [(7.0, True), (4.0, False), (float("nan"), False)])
def test_reward_filter_scores_the_target_with_the_prompt_and_typed_references(tmp_path, score, keep) -> None:
    from rewardkit.data.pipeline.filters import RewardFilter

    record, images = _built_record(tmp_path)
    reward = _Recorder(score)
    verdict = RewardFilter(reward, min_score=5.0).check(record, images)
    assert verdict.keep == keep and (verdict.reason == "") == keep
    ((batch, (context,)),) = reward.calls
    assert batch.shape == (1, 3, 32, 32) and float(batch.min()) >= 0 and float(batch.max()) <= 1
    assert context.prompt == record.prompt
    assert [r.kind for r in context.references] == ["subject", "subject", "background"]
    assert context.references[0].name == record.spec.subjects[0].name


def test_reward_filter_runs_an_mllm_judge(tmp_path) -> None:
    import rewardkit
    from rewardkit.data.pipeline.filters import RewardFilter
    from tests.rewards.judges.server import serve, smart_answer

    record, images = _built_record(tmp_path)
    with serve(smart_answer) as server:
        client = rewardkit.ChatClient(base_url=server.url, model="judge", backoff=0.0, max_retries=1)
        strict = RewardFilter(rewardkit.OmniRefJudge(client), min_score=9.5, name="judge").check(
            record, images
        )
        lenient = RewardFilter(rewardkit.OmniRefJudge(client), min_score=5.0, name="judge").check(
            record, images
        )
    assert 5.0 <= strict.score < 9.5 and not strict.keep and strict.reason.startswith("judge scored")
    assert lenient.keep and lenient.score == strict.score


def test_lighting_match_keeps_the_right_light_and_drops_the_mirrored_one(tmp_path) -> None:
    from PIL import Image

    from rewardkit.data.pipeline import make_record, plan_records
    from rewardkit.data.pipeline.config import DataConfig, build_providers
    from rewardkit.data.pipeline.filters import LightingMatch

    providers = build_providers(DataConfig(filters=[]))
    for plan in plan_records(4, categories={"subject_lighting": [3, 4]}, seed=5, size=64):
        record = make_record(plan, providers, tmp_path)
        target = np.asarray(Image.open(tmp_path / record.target))
        refs = tuple(np.asarray(Image.open(tmp_path / r.path)) for r in record.references)
        right = LightingMatch(0.0, size=128).check(record, RecordImages(target, refs, ()))
        mirrored = LightingMatch(0.0, size=128).check(
            record, RecordImages(target[::-1, ::-1].copy(), refs, ())
        )
        assert right.score > mirrored.score
        assert LightingMatch(right.score, size=128).check(record, RecordImages(target, refs, ())).keep
    no_light = plan_records(1, categories={"subject": [2]}, seed=5, size=64)[0]
    record = make_record(no_light, providers, tmp_path)
    refs = tuple(np.asarray(Image.open(tmp_path / r.path)) for r in record.references)
    blank = RecordImages(np.zeros((64, 64, 3), np.uint8), refs, ())
    assert LightingMatch(0.99).check(record, blank) == FilterResult(1.0, True)
    with pytest.raises(ValueError, match="min_score"):
        LightingMatch(1.5)
