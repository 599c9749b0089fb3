import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from rewardkit.data import CATEGORIES
from rewardkit.data.pipeline import Providers, finalize, plan_records, run_shard
from rewardkit.data.pipeline.config import DataConfig, build_providers
from rewardkit.data.pipeline.runner import shard_path
from rewardkit.evaluation import load_benchmark

SIZE = 48


def _plans(count: int = 12, seed: int = 0, test_fraction: float = 0.25):
    return plan_records(count, categories=CATEGORIES, seed=seed, test_fraction=test_fraction, size=SIZE)


def _providers() -> Providers:
    return build_providers(DataConfig())


class _Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so the runner does not record it as a failed record."""


class _DiesAt:
    """A text provider that 'dies' when it reaches one record."""

    def __init__(self, inner, index: int) -> None:
        self.inner, self.index = inner, index

    def scene(self, plan):
        if plan.index == self.index:
            raise _Killed
        return self.inner.scene(plan)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_plans_are_a_pure_function_of_the_seed_and_cover_the_categories() -> None:
    a, b = _plans(40), _plans(40)
    assert a == b and _plans(40, seed=1) != a
    assert sum(p.split == "test" for p in a) == 10
    assert len({p.seed for p in a}) == 40
    assert {p.category for p in _plans(len(CATEGORIES) * 6)} == set(CATEGORIES)
    with pytest.raises(ValueError, match="count must be >= 1"):
        plan_records(0, categories=CATEGORIES)
    with pytest.raises(ValueError, match="categories is empty"):
        plan_records(3, categories={})


def test_build_writes_omniref_metadata_the_loader_reads(tmp_path: Path) -> None:
    plans = _plans()
    report = run_shard(plans, _providers(), tmp_path)
    assert (report.planned, report.made, report.skipped) == (12, 12, 0)
    summary = finalize(tmp_path, plans)
    assert summary["present"] == 12 and summary["missing"] == 0
    assert summary["kept"]["train"] + summary["kept"]["test"] == report.kept
    train = load_benchmark(tmp_path / "train" / "metadata.json", check_files=True)
    for inst in train:
        plan = plans[inst.index]
        assert inst.category == plan.category and inst.n_refs == plan.n_refs and plan.split == "train"
        assert inst.target is not None
        kinds = [r.type for r in inst.references]
        assert kinds.count("subject") == plan.n_subjects  # subjects first, then the other types
        assert kinds[plan.n_subjects :] == list(plan.types)
    truth = json.loads((tmp_path / "train" / "ground_truth.json").read_text())
    assert set(truth) == {str(i.index) for i in train}


def test_a_killed_build_resumes_without_losing_or_repeating_a_record(tmp_path: Path) -> None:
    plans = _plans()
    providers = _providers()
    dying = Providers(_DiesAt(providers.text, 7), providers.images, providers.grounder, providers.segmenter,
                      providers.pose, providers.filters)  # fmt: skip
    with pytest.raises(_Killed):
        run_shard(plans, dying, tmp_path)
    log = shard_path(tmp_path, 0, 1)
    assert [r["index"] for r in _lines(log)] == list(range(7))  # everything before the kill is on disk
    # A kill in the middle of a write leaves a torn last line: the re-run cuts it off.
    with log.open("a") as f:
        f.write('{"index": 7, "split": "tr')
    report = run_shard(plans, providers, tmp_path)
    assert (report.skipped, report.made) == (7, 5)
    assert [r["index"] for r in _lines(log)] == list(range(12))
    again = run_shard(plans, providers, tmp_path)
    assert (again.skipped, again.made) == (12, 0)
    # The resumed build equals an uninterrupted one, byte for byte.
    clean = tmp_path / "clean"
    run_shard(plans, providers, clean)
    assert log.read_text() == shard_path(clean, 0, 1).read_text()
    assert finalize(tmp_path, plans)["kept"] == finalize(clean, plans)["kept"]
    for path in sorted((clean / "train").rglob("*.png")):
        assert path.read_bytes() == (tmp_path / "train" / path.relative_to(clean / "train")).read_bytes()


def test_shards_partition_the_records_and_merge_to_the_single_run(tmp_path: Path) -> None:
    plans = _plans()
    providers = _providers()
    for shard in range(3):
        run_shard(plans, providers, tmp_path / "sharded", num_shards=3, shard=shard)
    run_shard(plans, providers, tmp_path / "single")
    owned = [[r["index"] for r in _lines(shard_path(tmp_path / "sharded", k, 3))] for k in range(3)]
    assert sorted(itertools.chain(*owned)) == list(range(12)) and all(
        i % 3 == k for k in range(3) for i in owned[k]
    )
    finalize(tmp_path / "sharded", plans)
    finalize(tmp_path / "single", plans)
    for split in ("train", "test"):
        a = (tmp_path / "sharded" / split / "metadata.json").read_text()
        assert a == (tmp_path / "single" / split / "metadata.json").read_text()
    with pytest.raises(ValueError, match="shard must be in 0"):
        run_shard(plans, providers, tmp_path, num_shards=2, shard=2)


class _Failing:
    """The procedural grounder, but record 3 raises and record 4 finds nothing."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def boxes(self, image, names, *, plan):
        if plan.index == 3:
            raise RuntimeError("grounding server unreachable")
        return [None] * len(names) if plan.index == 4 else self.inner.boxes(image, names, plan=plan)


class _RejectOdd:
    name = "reject_odd"

    def check(self, record, images):
        from rewardkit.data.pipeline import FilterResult

        return FilterResult(float(record.index % 2), record.index % 2 == 0, "odd index")


def test_failures_and_filters_are_counted_with_reasons(tmp_path: Path) -> None:
    plans = _plans(8, test_fraction=0.0)
    providers = _providers()
    broken = Providers(providers.text, providers.images, _Failing(providers.grounder), providers.segmenter, providers.pose,
                       [_RejectOdd()])  # fmt: skip
    run_shard(plans, broken, tmp_path)
    summary = finalize(tmp_path, plans)
    assert (
        summary["dropped"]["error"] == 1 and "grounding server unreachable" in summary["examples"]["error"][0]
    )
    assert summary["dropped"]["grounding"] == 1 and "not found" in summary["examples"]["grounding"][0]
    records = {r["index"]: r for r in _lines(shard_path(tmp_path, 0, 1))}
    assert records[6]["scores"] == {"reject_odd": 0.0} and records[6]["dropped_by"] is None
    assert records[5]["dropped_by"] == "reject_odd" and records[5]["reason"] == "odd index"
    kept = [i.index for i in load_benchmark(tmp_path / "train" / "metadata.json")]
    assert kept == [i for i in range(8) if i % 2 == 0 and i != 4]
    assert not (tmp_path / "train" / plans[5].category).exists() or not any(
        p.parent.name == "5" for p in (tmp_path / "train").rglob("*.png")
    )  # dropped records write no images


def test_a_corrupt_line_inside_a_shard_file_is_an_error(tmp_path: Path) -> None:
    plans = _plans(4)
    log = shard_path(tmp_path, 0, 1)
    log.parent.mkdir(parents=True)
    log.write_text("not json\n")
    with pytest.raises(ValueError, match="line 1 is not a record"):
        run_shard(plans, _providers(), tmp_path)


def test_subject_references_are_cut_from_the_target(tmp_path: Path) -> None:
    from PIL import Image

    plans = plan_records(6, categories={"subject": [3]}, seed=2, size=SIZE)
    run_shard(plans, _providers(), tmp_path)
    finalize(tmp_path, plans)
    for inst in load_benchmark(tmp_path / "train" / "metadata.json"):
        target = np.asarray(Image.open(tmp_path / "train" / inst.target))
        colours = {tuple(p) for p in target.reshape(-1, 3)}
        for ref in inst.references:
            pixels = np.asarray(Image.open(tmp_path / "train" / ref.path)).reshape(-1, 3)
            assert {tuple(p) for p in pixels} <= colours | {(255, 255, 255)}


def test_sigkill_mid_build_then_rerun_loses_and_repeats_nothing(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).parents[3]
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "rewardkit.cli", "data", "build", "--out", str(out), "--quiet",
               "--set", "records.count=12", "--set", f"records.size={SIZE}",
               "--set", "text.provider=tests.data.pipeline.slow_text:SlowText"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = shard_path(out, 0, 1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = [r["index"] for r in _lines(log)]
    assert 3 <= len(done) < 12 and done == list(range(len(done)))
    rerun = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{12 - len(done)} records made" in rerun.stderr
    assert [r["index"] for r in _lines(log)] == list(range(12))
    clean = tmp_path / "clean"
    run_shard(_plans(12, test_fraction=0.1), _providers(), clean)
    assert log.read_text() == shard_path(clean, 0, 1).read_text()


def test_subject_file_names_are_safe_and_unique() -> None:
    from rewardkit.data.pipeline.runner import _file_stem

    assert _file_stem("a red kite", taken=[]) == "a red kite"
    assert _file_stem("a 3/4 view of a cat\\dog", taken=[]) == "a 3-4 view of a cat-dog"
    assert _file_stem("../../etc/passwd", taken=[]) == "etc-passwd"
    assert _file_stem("a kite", taken=["x/transfer_subjects/a kite.png"]) == "a kite (2)"
    assert _file_stem("a kite", taken=["x/a kite.png", "x/a kite (2).png"]) == "a kite (3)"
    assert _file_stem("///", taken=[]) == "subject"


def test_plans_refuse_unknown_categories_and_too_few_references() -> None:
    with pytest.raises(ValueError, match="category 'subject_mood'"):
        plan_records(2, categories={"subject_mood": [2]})
    with pytest.raises(ValueError, match="needs at least 3 references, got 2"):
        plan_records(2, categories={"subject_bg_style": [2]})
