"""``rewardkit sft`` / ``rewardkit grpo`` on the command line: help, config printing, errors."""

import pytest
import yaml

from rewardkit.cli import main


@pytest.mark.parametrize("recipe", ["sft", "grpo"])
def test_help(recipe: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([recipe, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: rewardkit {recipe}" in out
    for flag in ("--config", "--set", "--resume", "--model-path", "--output-dir", "--print-config"):
        assert flag in out
    assert "docs/training.md" in out


@pytest.mark.parametrize("recipe", ["sft", "grpo"])
def test_print_config_resolves_flags_and_overrides(recipe: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([recipe, "--backbone", "flux2-klein", "--model-path", "ckpt", "--train-data", "m.json",
                 "--epochs", "3", "--set", "optim.lr=2e-4", "--print-config"])  # fmt: skip
    assert code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"] | {"path": "ckpt", "backbone": "flux2-klein", "lora_rank": 32} == printed["model"]
    assert printed["train"]["epochs"] == 3 and printed["optim"]["lr"] == 2e-4


def test_config_errors_exit_2_with_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grpo", "--model-path", "ckpt", "--print-config"]) == 2
    assert "rewardkit grpo: error: data.train: required" in capsys.readouterr().err
    assert main(["sft", "--model-path", "c", "--train-data", "m", "--set", "train.bach_size=2"]) == 2
    assert "did you mean 'batch_size'" in capsys.readouterr().err
    assert (
        main(["grpo", "--model-path", "c", "--train-data", "m", "--set", "optim.lr=nan", "--print-config"])
        == 2
    )
    assert "rewardkit grpo: error: optim.lr: Input should be a finite number" in capsys.readouterr().err
    # every problem at once, one line each
    assert (
        main(["grpo", "--set", "optim.lr=nan", "--set", "train.group_size=-1", "--set", "trian.epochs=1"])
        == 2
    )
    err = capsys.readouterr().err
    assert "error: 5 problems in the config:" in err
    for key in ("optim.lr:", "train.group_size:", "trian:", "model.path:", "data.train:"):
        assert f"\n  {key} " in err, key


def test_set_addresses_a_list_item(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["grpo", "--model-path", "ckpt", "--train-data", "m.json", "--set", "rewards.0.weight=0.5",
                 "--print-config"])  # fmt: skip
    assert code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert [r["weight"] for r in printed["rewards"]] == [0.5, 0.8]
