"""`evaluate` end to end on a tiny OmniRef-mini split: folders, generation, faithful mode, failures."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import rewardkit
from rewardkit.evaluation import GenerationSettings, Run, load_benchmark, write_benchmark
from rewardkit.evaluation._images import load_rgb, resize_rgb, save_png
from tests.rewards.helpers import ToyEncoder

TINY_GENERATION = GenerationSettings(num_steps=2, height=64, width=64)


def expected_counts(metadata: Path) -> dict[str, int]:
    bench = load_benchmark(metadata)
    counts = {m: sum(i.applies(m) for i in bench) for m in ("style", "background", "lighting", "pose")}
    counts["subject"] = sum(len(i.references_of("subject")) for i in bench)
    return counts


@pytest.fixture(scope="module")
def tiny_klein(tmp_path_factory) -> Path:
    return rewardkit.make_tiny_checkpoint("flux2-klein", tmp_path_factory.mktemp("klein") / "ckpt")


@pytest.mark.slow
def test_targets_beat_a_tiny_backbone_and_every_file_is_written(
    mini, gt_folder, tiny_klein, fast, tmp_path
) -> None:
    runs = [
        Run("gt", images=gt_folder),
        Run("tiny", backbone="flux2-klein", checkpoint=tiny_klein, options={"device": "cpu"}),
    ]
    report = rewardkit.evaluate(runs, mini, out_dir=tmp_path, generation=TINY_GENERATION, **fast)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == json.loads(json.dumps(report.summary))  # what is returned is what is written
    gt, tiny = summary["methods"]["gt"], summary["methods"]["tiny"]
    assert gt["counts"] == expected_counts(mini) == tiny["counts"]
    assert gt["n_instances"] == tiny["n_instances"] == 12 and gt["missing_images"] == []
    assert gt["objective"]["pose"] == 1.0  # ground-truth keypoints of the target vs the reference pose
    for key in ("subject", "style", "background", "lighting", "avg"):
        assert -1 <= tiny["objective"][key] < gt["objective"][key] <= 1, key
    assert set(gt["by_n_refs"]) == {str(i.n_refs) for i in load_benchmark(mini)}

    # generated images: {index}.png plus the settings they were made with
    images = tmp_path / "images" / "tiny"
    assert sorted(p.name for p in images.glob("*.png")) == sorted(f"{i}.png" for i in range(12))
    assert summary["settings"]["runs"]["tiny"]["generation"]["num_steps"] == 2
    assert json.loads((images / "generation.json").read_text())["backbone"] == "flux2-klein"

    rows = [json.loads(line) for line in (tmp_path / "scores_gt.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(12))
    bench = load_benchmark(mini)
    for row, inst in zip(rows, bench, strict=True):
        assert len(row["subject_clip"]) == len(inst.references_of("subject"))
        assert set(row["objective"]) == {
            m for m in ("style", "background", "lighting", "pose") if inst.applies(m)
        }
    report_md = (tmp_path / "report.md").read_text()
    assert "| Method | Subject | Style | Bg | Light | Pose | **Obj Avg** |" in report_md
    assert "\n| gt | " in report_md and "\n| tiny | " in report_md and "oracle" in report_md
    from PIL import Image

    for plot in ("score_vs_n_refs.png", "scores_by_type.png"):
        with Image.open(tmp_path / plot) as png:
            assert png.format == "PNG" and png.width > 300

    # a rerun finds every image and does not load the backbone again
    again = rewardkit.evaluate(
        runs, mini, generation=TINY_GENERATION, metrics=("lighting",), out_dir=tmp_path / "re", progress=False
    )
    assert again.summary["methods"]["tiny"]["objective"]["lighting"] == pytest.approx(
        tiny["objective"]["lighting"]
    )


def _reference_folder(mini: Path, kind: str, folder: Path) -> list[int]:
    """Write each instance's ``kind`` reference as its "generated" image; return the indices."""
    bench = load_benchmark(mini)
    written = []
    for inst in bench:
        refs = inst.references_of(kind)
        if refs and inst.applies(kind):
            shutil.copy(bench.resolve(refs[0].path), folder / f"{inst.index}.png")
            written.append(inst.index)
    return written


@pytest.mark.parametrize("kind", ["style", "background", "lighting"])
def test_the_reference_itself_scores_one(mini, fast, tmp_path, kind) -> None:
    written = _reference_folder(mini, kind, tmp_path)
    report = rewardkit.evaluate({"ref": tmp_path}, mini, metrics=(kind,), allow_missing=True, **fast)
    records = report.records["ref"]
    assert [r.index for r in records] == written and written
    assert all(r.objective[kind] == pytest.approx(1.0, abs=1e-5) for r in records)
    assert report.summary["methods"]["ref"]["missing_images"] == sorted(set(range(12)) - set(written))


def test_subject_references_pasted_into_their_boxes_score_near_one(mini, gt_folder, fast, tmp_path) -> None:
    bench = load_benchmark(mini)
    truth = json.loads((mini.parent / "ground_truth.json").read_text())
    for inst in bench:
        image = load_rgb(bench.resolve(inst.target))
        for ref, (x1, y1, x2, y2) in zip(
            inst.references_of("subject"), truth[str(inst.index)]["subject_boxes"], strict=True
        ):
            image[y1 : y2 + 1, x1 : x2 + 1] = resize_rgb(
                load_rgb(bench.resolve(ref.path)), y2 - y1 + 1, x2 - x1 + 1
            )
        save_png(image, tmp_path / f"{inst.index}.png")
    # A pure pooling encoder sees through the resize, so an exact crop scores ~1: the boxes,
    # crops and reference pairing line up. (The 64 px stand-in encoder scores blurry 15 px
    # crops lower, but still above the targets.)
    toy = {"clip": ToyEncoder(), "dino": ToyEncoder(), "progress": False}
    pasted = rewardkit.evaluate({"pasted": tmp_path}, mini, metrics=("subject",), crop_padding=0, **toy)
    assert pasted.summary["methods"]["pasted"]["objective"]["subject"] > 0.98
    stand_in = rewardkit.evaluate(
        {"pasted": tmp_path, "gt": gt_folder}, mini, metrics=("subject",), crop_padding=0, **fast
    )
    scores = {k: v["objective"]["subject"] for k, v in stand_in.summary["methods"].items()}
    assert scores["pasted"] > scores["gt"]


def test_faithful_mode_reproduces_the_quirks(mini, gt_folder, fast) -> None:
    metrics = ("subject", "background", "lighting", "pose")
    fixed = rewardkit.evaluate({"m": gt_folder}, mini, metrics=metrics, **fast)
    quirk = rewardkit.evaluate({"m": gt_folder}, mini, metrics=metrics, faithful=True, **fast)
    assert quirk.summary["settings"]["mode"] == "faithful" and fixed.summary["settings"]["mode"] == "default"
    f, q = fixed.records["m"], quirk.records["m"]
    assert any(a.subject_clip != b.subject_clip for a, b in zip(f, q, strict=True))  # BGR crops
    assert all(a.objective.get("pose") == b.objective.get("pose") for a, b in zip(f, q, strict=True))
    lit = [r.objective["lighting"] for r in q if "lighting" in r.objective]
    assert lit and all(
        abs(v * 1e4 - round(v * 1e4)) < 1e-6 for v in lit
    )  # rounded like the script's 0-100 value
    bg = [
        (a.objective["background"], b.objective["background"])
        for a, b in zip(f, q, strict=True)
        if "background" in a.objective
    ]
    assert bg and any(abs(a - b) > 1e-6 for a, b in bg)  # both images channel-swapped


def test_faithful_mode_looks_images_up_by_list_position(mini, gt_folder, fast) -> None:
    bench = load_benchmark(mini)
    reordered = mini.parent / "reversed_metadata.json"
    write_benchmark(reversed(bench.instances), reordered)
    by_index = rewardkit.evaluate({"m": gt_folder}, reordered, metrics=("lighting",), **fast)
    original = rewardkit.evaluate({"m": gt_folder}, mini, metrics=("lighting",), **fast)
    lighting = {r.index: r.objective.get("lighting") for r in original.records["m"]}
    assert {r.index: r.objective.get("lighting") for r in by_index.records["m"]} == lighting
    by_position = rewardkit.evaluate(
        {"m": gt_folder}, reordered, metrics=("lighting",), faithful=True, **fast
    )
    # image k.png was scored against the instance at list position k (index 11 - k)
    assert [r.index for r in by_position.records["m"]] == [11 - k for k in range(12)]


def test_missing_images_stop_the_run_unless_allowed(mini, gt_folder, fast, tmp_path) -> None:
    for k in (0, 2, 3):
        shutil.copy(gt_folder / f"{k}.png", tmp_path / f"{k}.png")
    with pytest.raises(ValueError, match=r"9 of 12 images are missing .*allow_missing"):
        rewardkit.evaluate({"partial": tmp_path}, mini, metrics=("lighting",), **fast)
    report = rewardkit.evaluate(
        {"partial": tmp_path}, mini, metrics=("lighting",), allow_missing=True, **fast
    )
    assert report.summary["methods"]["partial"]["missing_images"] == [1, 4, 5, 6, 7, 8, 9, 10, 11]
    assert [r.index for r in report.records["partial"]] == [0, 2, 3]
    limited = rewardkit.evaluate({"partial": tmp_path}, mini, metrics=("lighting",), limit=1, **fast)
    assert [r.index for r in limited.records["partial"]] == [0]


def test_metric_selection_and_bad_arguments(mini, gt_folder, fast) -> None:
    report = rewardkit.evaluate(gt_folder, mini, metrics=("lighting", "pose"), **fast)
    objective = report.summary["methods"]["model"]["objective"]
    assert objective["subject"] is None and objective["style"] is None and objective["avg"] is None
    assert objective["lighting"] is not None and objective["pose"] == 1.0
    assert "| model |" in report.table
    with pytest.raises(ValueError, match="no judge"):
        rewardkit.evaluate(gt_folder, mini, metrics=("mllm",))
    with pytest.raises(ValueError, match="subset of"):
        rewardkit.evaluate(gt_folder, mini, metrics=("sharpness",))
    with pytest.raises(ValueError, match="unique"):
        rewardkit.evaluate([Run("a", images=gt_folder), Run("a", images=gt_folder)], mini)
    with pytest.raises(ValueError, match="run name"):
        Run("../escape", images=gt_folder)
    with pytest.raises(ValueError, match="go together"):
        Run("x", backbone="flux2-klein")
    with pytest.raises(ValueError, match="out_dir"):
        rewardkit.evaluate([Run("x", backbone="flux2-klein", checkpoint="ckpt")], mini)


@pytest.mark.slow
def test_a_lora_run_generates_with_the_adapter(mini, tiny_klein, tmp_path) -> None:
    backbone = rewardkit.load_backbone("flux2-klein", tiny_klein, device="cpu")
    backbone.add_adapter(rank=2)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for p in backbone.adapter_parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    lora = backbone.save_adapter(tmp_path / "lora")
    runs = [
        Run("base", backbone="flux2-klein", checkpoint=tiny_klein, options={"device": "cpu"}),
        Run("lora", backbone="flux2-klein", checkpoint=tiny_klein, lora=lora, options={"device": "cpu"}),
    ]
    report = rewardkit.evaluate(runs, mini, out_dir=tmp_path / "out", metrics=("lighting",), limit=2,
                                generation=TINY_GENERATION, progress=False)  # fmt: skip
    assert report.summary["settings"]["runs"]["lora"]["lora"] == str(lora)
    base, tuned = tmp_path / "out" / "images" / "base", tmp_path / "out" / "images" / "lora"
    assert not np.array_equal(load_rgb(base / "0.png"), load_rgb(tuned / "0.png"))
