"""``rewardkit plan``: the table, --json, and one-line errors with exit status 2."""

import json

import pytest

from rewardkit.cli import SUBCOMMANDS, main

pytest.importorskip("diffusers")


def test_plan_is_a_subcommand() -> None:
    assert SUBCOMMANDS["plan"][0] == "rewardkit.planning.cli"


def test_table_for_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "plan",
        "--backbone",
        "flux2-klein",
        "--variant",
        "tiny",
        "--resolution",
        "64",
        "--processes",
        "2",
    ]
    assert main([*args, "--gpu-memory", "1", "--group-size", "24"]) == 0
    out = capsys.readouterr().out
    assert "flux2-klein (tiny)" in out
    for label in ("DDP  ckpt off", "DDP  ckpt on", "FSDP ckpt off", "FSDP ckpt on"):
        assert label in out
    assert "micro-steps/group" in out
    for label in ("DDP no grad", "FSDP no grad"):
        assert label in out
    assert "/sampling step/group" in out


def test_json_for_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["plan", "--backbone", "qwen-image-edit-2511", "--variant", "tiny", "--resolution", "64", "--json"]
    assert main([*argv, "--references", "1", "--lora-rank", "2", "--text-encoder-on", "cpu"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["backbone"] == "qwen-image-edit-2511" and data["variant"] == "tiny"
    assert data["transformer_params"] == 190_720
    assert data["text_encoder_on_gpu"] is False
    assert len(data["rows"]) == 4
    assert [r["strategy"] for r in data["rollout_rows"]] == ["DDP", "FSDP"]
    assert data["sampling_peak"] == data["rollout_rows"][0]["estimate"]["activations_per_sample"] > 0
    row = data["rows"][0]
    assert (
        row["total_at_1"]
        == sum(row["estimate"][k] for k in ("weights", "fsdp_gather", "frozen_components", "lora"))
        + row["estimate"]["activations_per_sample"]
        + row["estimate"]["transient_per_sample"]
    )


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--resolution", "100"], "--resolution"),
        (["--variant", "nope"], "--variant"),
        (["--gpu-memory", "0"], "--gpu-memory"),
        (["--lora-rank", "x"], "--lora-rank"),
        (["--backbone", "flux2_klein"], "--backbone: unknown backbone"),
    ],
)
def test_bad_input_is_one_line_naming_the_option(
    argv, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        code = main(["plan", "--backbone", "flux2-klein", "--variant", "tiny", *argv])
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert option in err[-1]
