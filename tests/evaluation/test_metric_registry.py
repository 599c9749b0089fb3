"""Adding a metric is one function and one registration (the example of docs/evaluation.md)."""

import json

import pytest

import rewardkit
from rewardkit.evaluation import load_benchmark
from rewardkit.evaluation.metric_registry import (
    MetricContext,
    MetricOutput,
    list_metrics,
    register_metric,
    unregister_metric,
)


def brightness(ctx: MetricContext) -> MetricOutput:
    """Mean brightness of the generated image, 0–1."""
    return MetricOutput(value=float(ctx.image.mean()) / 255)


@pytest.fixture
def registered():
    register_metric("brightness", brightness)
    yield
    unregister_metric("brightness")


def test_a_registered_metric_is_scored_summarized_and_reported(registered, mini, gt_folder, fast, tmp_path):
    from rewardkit.evaluation._images import load_rgb

    assert list_metrics()[:5] == ("subject", "style", "background", "lighting", "pose")
    assert "brightness" in list_metrics()
    report = rewardkit.evaluate(
        {"gt": gt_folder}, mini, metrics=("lighting", "brightness"), out_dir=tmp_path, plots=False, **fast
    )
    bench = load_benchmark(mini)
    want = {i.index: float(load_rgb(gt_folder / f"{i.index}.png").mean()) / 255 for i in bench}
    rows = [json.loads(line) for line in (tmp_path / "scores_gt.jsonl").read_text().splitlines()]
    assert {r["index"]: r["custom"]["brightness"] for r in rows} == pytest.approx(want)
    assert all("brightness" not in r["objective"] for r in rows)  # the five keep their columns
    summary = json.loads((tmp_path / "summary.json").read_text())
    method = summary["methods"]["gt"]
    assert method["custom"]["brightness"] == pytest.approx(sum(want.values()) / len(want))
    assert method["custom_counts"] == {"brightness": 12}
    assert method["objective"]["lighting"] is not None and method["objective"]["subject"] is None
    assert report.summary["methods"]["gt"]["custom"] == method["custom"]
    text = (tmp_path / "report.md").read_text()
    assert "## Other metrics" in text and "| Method | brightness |" in text
    assert f"| gt | {method['custom']['brightness']:.4f} |" in text


def test_registration_is_checked(registered):
    with pytest.raises(ValueError, match="already registered"):
        register_metric("brightness", brightness)
    with pytest.raises(ValueError, match="built-in"):
        register_metric("mllm", brightness)
    with pytest.raises(ValueError, match="needs"):
        register_metric("other", brightness, needs=("clipp",))
    with pytest.raises(ValueError, match="built-in"):
        unregister_metric("subject")


def test_an_unregistered_metric_is_refused(mini):
    with pytest.raises(ValueError, match="metrics must be"):
        rewardkit.evaluate({"gt": "."}, mini, metrics=("brightness",))


def test_without_custom_metrics_the_outputs_have_no_custom_keys(mini, gt_folder, fast, tmp_path):
    rewardkit.evaluate({"gt": gt_folder}, mini, metrics=("lighting",), out_dir=tmp_path, plots=False, **fast)
    assert "custom" not in (tmp_path / "scores_gt.jsonl").read_text()
    assert "custom" not in (tmp_path / "summary.json").read_text()
    assert "Other metrics" not in (tmp_path / "report.md").read_text()


def test_every_benchmark_format_is_an_eval_task(mini, tmp_path):
    from rewardkit.evaluation.case_task import CaseTask
    from rewardkit.evaluation.omniref_task import OmniRefTask
    from rewardkit.evaluation.tasks import EvalTask, load_task

    task = load_task(mini, limit=3)
    assert isinstance(task, OmniRefTask) and isinstance(task, EvalTask) and task.kind == "omniref"
    assert [g.index for g in task.generation_items()] == [i.index for i in task.items] and len(
        task.items
    ) == 3
    path = tmp_path / "dual.json"
    (tmp_path / "a.png").write_bytes(b"")
    path.write_text(json.dumps([{"index": 5, "prompt": "p", "task": "style", "inputs": ["a.png"]}]))
    cases = load_task(path)
    assert isinstance(cases, CaseTask) and isinstance(cases, EvalTask) and cases.kind == "dual_ref"
    pairs, missing = cases.match({5: tmp_path / "5.png"}, faithful=True)
    assert [(c.index, p.name) for c, p in pairs] == [(5, "5.png")] and missing == []


def test_the_cli_imports_a_metric_module(mini, gt_folder, tmp_path, monkeypatch):
    import sys

    from rewardkit.cli import main

    (tmp_path / "toy_brightness_metric.py").write_text(
        "from rewardkit.evaluation.metric_registry import MetricOutput, register_metric\n\n\n"
        "def brightness(ctx):\n"
        "    return MetricOutput(value=float(ctx.image.mean()) / 255)\n\n\n"
        'register_metric("brightness", brightness)\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    try:
        code = main(["eval", str(mini), "--images", f"gt={gt_folder}", "--metric-module", "toy_brightness_metric",
                     "--metrics", "brightness", "--no-plots", "--out", str(out), "--no-progress"])  # fmt: skip
    finally:
        unregister_metric("brightness")
        sys.modules.pop("toy_brightness_metric", None)
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"]["gt"]["custom_counts"] == {"brightness": 12}


def test_a_missing_metric_module_is_a_one_line_error(mini, gt_folder, tmp_path, capsys):
    from rewardkit.cli import main

    code = main(["eval", str(mini), "--images", f"gt={gt_folder}", "--metric-module", "no_such_metric_module",
                 "--out", str(tmp_path / "out"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--metric-module: cannot import 'no_such_metric_module'" in err[0]
