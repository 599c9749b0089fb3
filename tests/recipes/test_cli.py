"""``rewardkit sft`` / ``rewardkit grpo`` on the command line: help, config printing, errors."""

from pathlib import Path

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


def test_a_missing_or_unreadable_image_ends_in_one_line_naming_it(
    tiny: dict[str, Path], data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import shutil

    from tests.recipes.conftest import sft_config, write_yaml

    split = tmp_path / "split"
    shutil.copytree(data["train"].parent, split)
    first = json.loads((split / "metadata.json").read_text())[0]
    missing, garbled = split / first["edit_image"][0], split / first["edit_image"][1]
    missing.unlink()
    splits = {"train": split / "metadata.json", "test": data["test"]}
    config = write_yaml(sft_config(tiny, splits, tmp_path / "out", data={"eval": None}),
                        tmp_path / "sft.yaml")  # fmt: skip
    assert main(["sft", "--config", str(config)]) == 2
    err = capsys.readouterr().err  # (above it only the loaders' progress bars)
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("rewardkit sft: error: ") and missing.name in last
    shutil.copy(garbled, missing)
    garbled.write_bytes(b"not a PNG")
    assert main(["sft", "--config", str(config), "--output-dir", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and garbled.name in last and "cannot identify image file" in last
