"""examples/dyref_full.py: option handling, the ablation table, and the whole run (slow)."""

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


dyref = _load("dyref_full")


def _plan(*argv: str) -> Any:
    return dyref.make_plan(dyref.build_parser().parse_args(list(argv)))


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        dyref.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--quick", "--ablation", "--backbone", "--model-path", "--data", "--test-data",
                   "--rewards", "--config", "--out", "--device", "--seed", "--resume"):  # fmt: skip
        assert option in text
    assert "accelerate launch" in text


def test_default_plan_uses_the_embedded_backbone_and_offline_rewards() -> None:
    plan = _plan("--out", "x")
    assert Path(plan.model["path"]) == dyref.EMBEDDED_BACKBONE
    assert (dyref.EMBEDDED_BACKBONE / "model_index.json").is_file()
    assert [r["reward"] for r in plan.rewards] == ["offline_similarity", "offline_style"]
    assert plan.rewards[0]["options"]["drs"] is True
    assert plan.generation.height == 64 and plan.generation.guidance_scale == 1.0
    assert plan.train is None and plan.n_train == dyref.PRESETS["default"].n_train
    quick = _plan("--quick", "--out", "x")
    assert quick.n_train < plan.n_train
    assert quick.grpo["train"]["epochs"] < plan.grpo["train"]["epochs"]


def test_real_weights_start_from_the_recipe_defaults(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("sft: {train: {epochs: 3}}\neval: {generation: {num_steps: 30}}\n")
    plan = _plan("--model-path", "/models/qwen", "--rewards", "dyref", "--config", str(config))
    assert plan.model["path"] == "/models/qwen"
    assert plan.sft == {"train": {"epochs": 3}}  # no tiny preset on top of real weights
    assert plan.grpo == {}
    assert plan.generation.num_steps == 30 and plan.generation.guidance_scale == 4.0
    assert plan.rewards[0]["reward"] == "siglip_similarity" and plan.rewards[1]["reward"] == "csd_score"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--config", "missing.yaml"], "does not exist"),
        (["--data", "nowhere/train/metadata.json"], "pass --test-data"),
        (["--backbone", "flux2-klein"], "needs --model-path"),
    ],
)
def test_bad_options_exit_2_with_a_message(
    argv: list[str], message: str, capsys: Any, tmp_path: Path
) -> None:
    assert dyref.main([*argv, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err


def test_unknown_config_section_is_rejected(tmp_path: Path, capsys: Any) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("trainer: {}\n")
    assert dyref.main(["--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "top-level keys" in capsys.readouterr().err


def test_used_run_folder_is_refused(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "old.txt").write_text("x")
    assert dyref.main(["--out", str(tmp_path)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_ablation_variants_change_only_their_component() -> None:
    rewards = dyref.OFFLINE_REWARDS
    no_drs = dyref.variant_rewards(rewards, "no_drs")
    assert no_drs[0]["options"]["drs"] is False and no_drs[1] == rewards[1]
    assert rewards[0]["options"]["drs"] is True  # the shared list is not mutated
    assert [r["name"] for r in dyref.variant_rewards(rewards, "no_style")] == ["image_similarity"]
    assert dyref.variant_rewards(rewards, None) == rewards
    assert dyref.ABLATIONS["no_dar"] == {"dar": {"enabled": False}}
    assert dyref.ABLATIONS["sft_only"] is None


def _method(avg: float, psnr: float | None = None, ratio: float | None = None) -> dict[str, Any]:
    keys = ("subject", "style", "background", "lighting", "pose")
    out: dict[str, Any] = {"objective": {**dict.fromkeys(keys, avg), "avg": avg, "avg_present": avg}}
    if psnr is not None:
        out["fidelity"] = {"psnr": psnr, "ssim": 0.5, "perceptual": 0.25, "diversity_ratio": ratio}
    return out


def test_ablation_table_has_a_row_per_setting() -> None:
    summary = {"methods": {"sft_only": _method(0.5), "full": _method(0.625, 12.5, 0.9)}}
    table = dyref.ablation_table(summary).splitlines()
    assert table[0].startswith("| Setting | Subject") and "| PSNR |" in table[0]
    assert table[2].startswith("| sft_only |") and table[2].endswith("| 0.5000 | – | – | – |")
    assert table[3].startswith("| full |") and table[3].endswith("| 0.6250 | 12.50 | 0.500 | 0.90 |")


def test_stage_table_shows_the_change_in_score_and_in_psnr() -> None:
    summary = {
        "methods": {
            "base": _method(0.5, 12.0, 0.8),
            "sft": _method(0.55, 13.25, 0.85),
            "rl": _method(0.6, 13.0, 0.4),
        }
    }
    rows = dyref.stage_table(summary).splitlines()
    assert rows[2] == "| base | 0.5000 |  | 12.00 |  | 0.500 | 0.250 | 0.80 |"
    assert rows[3].startswith("| SFT (Stage I) | 0.5500 | +0.0500 | 13.25 | +1.25 |")
    assert rows[4].startswith("| RL (Stage II: GDPO + DAR + DRS) | 0.6000 | +0.0500 | 13.00 | -0.25 |")
    assert rows[4].endswith("| 0.40 |")


@pytest.mark.slow
def test_default_run_improves_stage_by_stage(tmp_path: Path) -> None:
    """The README's run, seed 0: the pictures get closer to the targets stage by stage.

    Issue 14's bar: the base composes (PSNR vs target >= 12 dB), SFT beats it and RL does not
    lose what SFT gained, and RL keeps at least 0.8 of SFT's output diversity (no collapse
    warning). Every file of the run folder is written, the contact sheet included.
    """
    out = tmp_path / "run"
    assert dyref.main(["--seed", "0", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"base", "sft", "rl"}
    avg = {m: summary["methods"][m]["objective"]["avg"] for m in ("base", "sft", "rl")}
    fidelity = {m: summary["methods"][m]["fidelity"] for m in ("base", "sft", "rl")}
    psnr = {m: f["psnr"] for m, f in fidelity.items()}
    # measured at seed 0 (two threads): PSNR 12.96 → 13.61 → 13.76 dB, Obj Avg 0.6515 → 0.6937
    # → 0.7051. Stage I's gains are robust (Stage I learns the lighting references); Stage II's
    # (+0.15 dB, +0.011) are within what another thread count can change, so they are checked
    # as "no loss" bounds.
    assert psnr["base"] >= 12.0, psnr
    assert psnr["sft"] > psnr["base"] + 0.3, psnr
    assert psnr["rl"] > psnr["sft"] - 0.2, psnr
    assert avg["sft"] > avg["base"] + 0.02 and avg["rl"] > avg["sft"] - 0.01, avg
    assert fidelity["rl"]["diversity"] >= 0.8 * fidelity["sft"]["diversity"], fidelity
    assert summary["warnings"] == []
    for name in (
        "report.md",
        "contact_sheet.png",
        "score_vs_n_refs.png",
        "scores_by_type.png",
        "reward_curves.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert (out / "sft" / "adapter").is_dir() and (out / "grpo" / "adapter").is_dir()
    assert list((out / "grpo" / "checkpoints").iterdir())
    report = (out / "report.md").read_text()
    assert "| RL" in report and "PSNR" in report and "contact_sheet.png" in report
    records = [json.loads(line) for line in (out / "scores_rl.jsonl").read_text().splitlines()]
    assert all(r["psnr"] > 0 and -1 <= r["ssim"] <= 1 and r["perceptual"] >= 0 for r in records)


@pytest.mark.slow
def test_quick_ablation_writes_its_table(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert dyref.main(["--quick", "--ablation", "--seed", "0", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"base", "sft", "rl"}
    # --quick is a smoke test: with the composing base its stage-by-stage direction is within
    # the noise of 16 test instances (tutorial); what it must never do is collapse
    assert summary["warnings"] == [], summary["warnings"]
    assert all(summary["methods"][m]["fidelity"]["diversity_ratio"] > 0.5 for m in ("base", "sft", "rl"))
    table = (out / "ablation" / "table.md").read_text()
    for row in dyref.ABLATIONS:
        assert f"| {row} |" in table
    assert "Ablation" in (out / "report.md").read_text()
    ablation = json.loads((out / "ablation" / "summary.json").read_text())
    # SFT only and full reuse the main run's images: the same scores as sft and rl (up to the
    # float32 rounding of encoder batches)
    for row, method in (("full", "rl"), ("sft_only", "sft")):
        got, expected = ablation["methods"][row]["objective"], summary["methods"][method]["objective"]
        assert got == pytest.approx(expected, rel=1e-5), row


@pytest.mark.slow
def test_quick_run_trains_on_a_dataset_built_by_the_pipeline(tmp_path: Path) -> None:
    """``rewardkit data build`` (offline config) makes data that the main job trains and evaluates on."""
    from rewardkit.cli import main as rewardkit_main

    config = ROOT / "examples" / "configs" / "data_offline.yaml"
    data = tmp_path / "data"
    overrides = ["--set", "records.count=40", "--set", "records.test_fraction=0.2"]
    assert (
        rewardkit_main(["data", "build", "--config", str(config), "--out", str(data), *overrides, "--quiet"])
        == 0
    )
    built = json.loads((data / "summary.json").read_text())
    out = tmp_path / "run"
    assert (
        dyref.main(
            ["--quick", "--seed", "0", "--data", str(data / "train" / "metadata.json"), "--out", str(out)]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    for method in ("base", "sft", "rl"):
        assert summary["methods"][method]["n_instances"] == built["kept"]["test"]
    assert len(list((out / "images" / "rl").glob("*.png"))) == built["kept"]["test"]
    assert (out / "sft" / "adapter").is_dir() and (out / "grpo" / "adapter").is_dir()
