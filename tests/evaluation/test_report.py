import json
from pathlib import Path

import pytest

from rewardkit.evaluation.report import (
    FIDELITY_KEYS,
    MLLM_DIMENSIONS,
    InstanceScores,
    fidelity_table,
    markdown_table,
    summarize,
    write_summary,
)


def records() -> list[InstanceScores]:
    return [
        InstanceScores(
            0, 2, "subject_style", (0.5, 0.7), (0.3, 0.5), {"style": 0.4}, {d: 8.0 for d in MLLM_DIMENSIONS}
        ),
        InstanceScores(
            1,
            3,
            "subject_bg",
            (0.9,),
            (0.7,),
            {"background": 0.8},
            {"subject_consistency": 6.0, "background_consistency": 7.0},
        ),
        InstanceScores(2, 3, "subject_pose_lighting", (0.6,), (0.4,), {"lighting": 0.7, "pose": 0.9}),
    ]


def test_columns_are_formed_like_the_paper() -> None:
    summary = summarize({"rl": records()})
    obj = summary["methods"]["rl"]["objective"]
    # Subject: means over (instance, subject) pairs, so instance 0 weighs twice.
    assert obj["subject"] == pytest.approx(((0.5 + 0.7 + 0.9 + 0.6) / 4 + (0.3 + 0.5 + 0.7 + 0.4) / 4) / 2)
    assert (obj["style"], obj["background"], obj["lighting"], obj["pose"]) == (0.4, 0.8, 0.7, 0.9)
    assert obj["avg"] == pytest.approx((obj["subject"] + 0.4 + 0.8 + 0.7 + 0.9) / 5)
    mllm = summary["methods"]["rl"]["mllm"]
    assert (
        mllm["subject_consistency"] == 7.0
        and mllm["background_consistency"] == 7.5
        and mllm["text_adherence"] == 8.0
    )
    assert mllm["avg"] == pytest.approx((7.0 + 7.5 + 8 + 8 + 8 + 8) / 6)
    assert summary["methods"]["rl"]["counts"] == {
        "subject": 4,
        "style": 1,
        "background": 1,
        "lighting": 1,
        "pose": 1,
    }


def test_paper_average_arithmetic() -> None:
    # Tab. 2, Qwen-2511 + DyRef: objective (0.62+0.46+0.87+0.76+0.83)/5 = 0.708.
    rec = [
        InstanceScores(
            0, 4, "subject_pose_bg_style", (0.62,), (0.62,), {"style": 0.46, "background": 0.87, "pose": 0.83}
        ),
        InstanceScores(1, 4, "subject_lighting", (0.62,), (0.62,), {"lighting": 0.76}),
    ]
    assert summarize({"m": rec})["methods"]["m"]["objective"]["avg"] == pytest.approx(0.708)


def test_breakdown_by_number_of_references_and_missing_columns() -> None:
    summary = summarize({"rl": records()})
    by_n = summary["methods"]["rl"]["by_n_refs"]
    assert set(by_n) == {"2", "3"}
    assert by_n["2"]["objective"]["style"] == 0.4 and by_n["2"]["objective"]["pose"] is None
    assert by_n["2"]["objective"]["avg"] is None  # not formed from a partial set of columns
    assert by_n["3"]["n_instances"] == 2


def test_table_and_files(tmp_path: Path) -> None:
    runs = {"base": records()[:2], "rl": records()}
    summary = write_summary(runs, tmp_path, plots=True)
    table = markdown_table(summary)
    lines = table.strip().splitlines()
    assert lines[0].startswith(
        "| Method | Subject | Style | Bg | Light | Pose | **Obj Avg** | M-Subject | M-Bg"
    )
    assert lines[2].startswith("| base |") and "–" in lines[2]  # base has no pose column
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert len((tmp_path / "scores_rl.jsonl").read_text().splitlines()) == 3
    assert (tmp_path / "score_vs_n_refs.png").read_bytes()[:4] == b"\x89PNG"
    write_summary(runs, tmp_path, plots=False)  # rerun rewrites, never appends
    assert len((tmp_path / "scores_rl.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"objective": {"colour": 1.0}}, "unknown metric"),
        ({"mllm": {"beauty": 1.0}}, "unknown dimension"),
        ({"subject_clip": (0.1,)}, "one score per subject"),
        ({"objective": {"pose": float("nan")}}, "must be finite"),
        ({"psnr": float("inf")}, "must be finite"),
    ],
)
def test_bad_records(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        InstanceScores(0, 2, "subject", **kwargs)


def test_fidelity_block_table_and_warnings(tmp_path: Path) -> None:
    plain = records()
    compared = [
        InstanceScores(0, 2, "subject_style", psnr=20.0, ssim=0.5, perceptual=0.3),
        InstanceScores(1, 3, "subject_bg", psnr=30.0, ssim=0.7),  # perceptual unavailable
        InstanceScores(2, 3, "subject"),  # no target
    ]
    assert "psnr" not in plain[0].to_json()  # JSONL lines without targets are unchanged
    assert compared[1].to_json()["perceptual"] is None and compared[0].to_json()["psnr"] == 20.0
    diversity = {"rl": {"diversity": 0.1, "target_diversity": 0.4, "diversity_ratio": 0.25}}
    summary = write_summary(
        {"base": plain, "rl": compared}, tmp_path, plots=False, diversity=diversity, warnings=["collapse: rl"]
    )
    assert "fidelity" not in summary["methods"]["base"]
    block = summary["methods"]["rl"]["fidelity"]
    assert set(FIDELITY_KEYS) <= set(block) and block["n_compared"] == 2
    assert (block["psnr"], block["ssim"], block["perceptual"]) == (25.0, pytest.approx(0.6), 0.3)
    assert block["diversity_ratio"] == 0.25 and summary["warnings"] == ["collapse: rl"]
    table = fidelity_table(summary).splitlines()
    assert len(table) == 3 and table[2] == "| rl | 25.00 | 0.600 | 0.300 | 0.100 | 0.400 | 0.25 |"
    report = (tmp_path / "report.md").read_text()
    assert (
        report.startswith("# Evaluation\n\n> **Warning:** collapse: rl\n") and "## Target fidelity" in report
    )
    assert fidelity_table(summarize({"base": plain})) == ""
    assert "warnings" not in write_summary({"base": plain}, tmp_path, plots=False)  # unchanged without
