import pytest

from rewardkit.cli import SUBCOMMANDS, main


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


def test_no_command_prints_help_and_unknown_command_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 0 and "usage: rewardkit" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["train-everything"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_eval_help_explains_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for needle in ("--images NAME=DIR", "--generate", "--faithful", "--metrics", "--judge-url", "--detector",
                   "offline_similarity", "REWARDKIT_JUDGE_API_KEY", "summary.json", "scores_by_type.png"):  # fmt: skip
        assert needle in out, needle
