"""`rewardkit eval` end to end: folders and a tiny backbone in, table, JSON and plots out."""

import json

import pytest

import rewardkit
from rewardkit.cli import main
from tests.rewards.judges.server import chat, prompt_text, serve

DIMS = ("text_adherence", "subject_consistency", "style_consistency", "lighting_consistency",
        "background_consistency", "aesthetic_quality")  # fmt: skip


def sevens(body, count):
    """A judge that gives 7 on every dimension."""
    assert "six independent dimensions" in prompt_text(body)
    return chat(json.dumps({d: {"score": 7, "reasoning": "."} for d in DIMS}))


ENCODERS = ["--clip", "offline_similarity,image_size=64,device=cpu", "--dino", "offline_similarity,image_size=64",
            "--style", "offline_style,image_size=64,device=cpu"]  # fmt: skip


@pytest.mark.slow
def test_cli_writes_the_table_and_plots_for_a_folder_and_a_generated_run(
    mini, gt_folder, tmp_path, capsys, monkeypatch
) -> None:
    checkpoint = rewardkit.make_tiny_checkpoint("flux2-klein", tmp_path / "klein")
    monkeypatch.setenv("REWARDKIT_JUDGE_API_KEY", "sk-test-secret")
    out = tmp_path / "report"
    with serve(sevens) as server:
        code = main([
            "eval", str(mini), "--images", f"gt={gt_folder}", "--generate", "tiny", "flux2-klein", str(checkpoint),
            "--backbone-option", "device=cpu", "--steps", "2", "--height", "64", "--width", "64", *ENCODERS,
            "--judge-url", server.url, "--judge-model", "judge", "--out", str(out), "--no-progress",
        ])  # fmt: skip
        auth = {h.get("Authorization") for h in server.headers}
    assert code == 0
    assert auth == {"Bearer sk-test-secret"}  # the key comes from the environment
    printed = capsys.readouterr().out
    assert "| Method | Subject | Style | Bg | Light | Pose | **Obj Avg** | M-Subject |" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["methods"]) == ["gt", "tiny"]
    for method in summary["methods"].values():
        assert method["objective"]["avg"] is not None and method["mllm"]["avg"] == 7.0
    assert summary["settings"]["encoders"]["clip"] == "offline_similarity,image_size=64,device=cpu"
    assert summary["settings"]["runs"]["tiny"]["generation"]["guidance_scale"] == 4.0
    assert sorted(p.name for p in out.iterdir()) == [
        "contact_sheet.png", "images", "report.md", "score_vs_n_refs.png", "scores_by_type.png",
        "scores_gt.jsonl", "scores_tiny.jsonl", "summary.json",
    ]  # fmt: skip
    for file in out.iterdir():
        if file.is_file():
            assert b"sk-test-secret" not in file.read_bytes()
    report = (out / "report.md").read_text()
    assert "\n| gt | " in report and "\n| tiny | " in report and "## tiny: by number of references" in report
    assert "## Target fidelity" in report  # fidelity is on by default; OmniRef-mini has targets
    assert summary["methods"]["gt"]["fidelity"]["psnr"] == 100.0


def test_cli_errors_exit_2_with_a_message(mini, gt_folder, tmp_path, capsys) -> None:
    assert main(["eval", str(mini), "--out", str(tmp_path)]) == 2
    assert "at least one run" in capsys.readouterr().err
    assert main(["eval", str(mini), "--images", "gt", "--out", str(tmp_path)]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    assert (
        main(
            ["eval", str(mini), "--images", f"gt={gt_folder}", "--clip", "clip-large", "--out", str(tmp_path)]
        )
        == 2
    )
    assert "choose from" in capsys.readouterr().err
    assert (
        main(["eval", str(tmp_path / "nope.json"), "--images", f"gt={gt_folder}", "--out", str(tmp_path)])
        == 2
    )
    assert "not found" in capsys.readouterr().err


def test_cli_folder_only_run_with_selected_metrics(mini, gt_folder, tmp_path, capsys) -> None:
    code = main(["eval", str(mini), "--images", f"gt={gt_folder}", "--metrics", "lighting,pose", "--faithful",
                 "--no-plots", "--out", str(tmp_path), "--no-progress"])  # fmt: skip
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["settings"]["mode"] == "faithful" and summary["settings"]["metrics"] == [
        "lighting",
        "pose",
    ]
    assert summary["methods"]["gt"]["objective"]["pose"] == 1.0
    assert not (tmp_path / "scores_by_type.png").exists()
    assert "oracle" in capsys.readouterr().out
