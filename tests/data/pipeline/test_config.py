import json
import logging
import re
from pathlib import Path

import pytest

from rewardkit.cli import main
from rewardkit.data.pipeline.config import DataConfig, ProviderSpec, build_providers, register_provider
from rewardkit.recipes.config_loading import ConfigError, load_model

CONFIGS = Path(__file__).parents[3] / "examples" / "configs"


def _build(config: Path, out: Path, count: int) -> dict:
    """``rewardkit data build`` of ``count`` records; the build's summary."""
    args = [
        "data",
        "build",
        "--config",
        str(config),
        "--out",
        str(out),
        "--set",
        f"records.count={count}",
        "--quiet",
    ]
    assert main(args) == 0
    return json.loads((out / "summary.json").read_text())


class NotAGrounder:
    def __init__(self, **options) -> None:
        self.options = options


def test_unknown_provider_names_the_stage_and_the_registered_ones() -> None:
    with pytest.raises(
        ValueError,
        match=r"grounding.provider: unknown 'dino'; registered: \['grounding-dino', 'procedural'\]",
    ):
        build_providers(DataConfig(grounding=ProviderSpec(provider="dino")))
    with pytest.raises(ValueError, match=r"segmentation.options: .*unexpected keyword argument 'level'"):
        build_providers(DataConfig(segmentation=ProviderSpec(provider="colour", options={"level": 3})))
    with pytest.raises(ValueError, match="does not implement Grounder"):
        build_providers(DataConfig(grounding=ProviderSpec(provider=f"{__name__}:NotAGrounder")))
    with pytest.raises(ValueError, match=re.escape("cannot import 'nowhere.module:X'")):
        build_providers(DataConfig(text=ProviderSpec(provider="nowhere.module:X")))


def test_register_provider_makes_a_name_selectable() -> None:
    from rewardkit.data.pipeline.procedural import ColourSegmenter

    register_provider("segmentation", "test-colour-32", lambda: ColourSegmenter(32))
    providers = build_providers(DataConfig(segmentation=ProviderSpec(provider="test-colour-32")))
    assert providers.segmenter.threshold == 32
    with pytest.raises(ValueError, match="already registered"):
        register_provider("segmentation", "test-colour-32", ColourSegmenter)
    with pytest.raises(ValueError, match="stage must be one of"):
        register_provider("upscaling", "x", ColourSegmenter)


def test_every_config_mistake_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("records: {count: 0, test_fraction: 1.5, categories: {subject_mood: [2]}}\nimagez: {}\n")
    with pytest.raises(ConfigError) as err:
        load_model(DataConfig, path=path)
    problems = "\n".join(err.value.problems)
    for expected in (
        "records.count",
        "records.test_fraction",
        "unknown categories ['subject_mood']",
        "imagez",
    ):
        assert expected in problems
    assert len(err.value.problems) == 4


def test_cli_builds_resumes_and_reports_bad_input_in_one_line(tmp_path: Path, capsys, caplog) -> None:
    caplog.set_level(logging.INFO, logger="rewardkit.data")
    out = tmp_path / "data"
    args = [
        "data",
        "build",
        "--out",
        str(out),
        "--set",
        "records.count=6",
        "--set",
        "records.size=40",
        "--quiet",
    ]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["present"] == 6 and (out / "train" / "metadata.json").is_file()
    caplog.clear()
    assert main(args) == 0  # nothing left to make
    assert "0 records made, 0 kept, 6 already done" in caplog.text
    assert main(["data", "build", "--set", "records.count=-1"]) == 2
    assert main(["data", "build", "--num-shards", "2", "--shard", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2].startswith("rewardkit data: records.count") and "--shard must be in 0 … 1" in err[-1]
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert main(["data", "build", "--out", str(blocked / "x"), "--set", "records.count=2", "--quiet"]) == 1
    assert capsys.readouterr().err.strip().startswith(f"rewardkit data: cannot write {blocked}")


def test_the_example_config_builds(tmp_path: Path) -> None:
    config = load_model(DataConfig, path=CONFIGS / "data_offline.yaml", overrides=["records.count=5"])
    assert len(config.filters) == 3 and config.records.size == 64
    assert _build(CONFIGS / "data_offline.yaml", tmp_path, 5)["present"] == 5


@pytest.mark.parametrize("name", ["data_models.yaml", "data_tiny_models.yaml"])
def test_the_model_configs_are_valid(name: str) -> None:
    config = load_model(DataConfig, path=CONFIGS / name)
    assert config.images.provider == "models" and config.segmentation.provider == "sam"


def test_the_tiny_models_config_builds_end_to_end(tmp_path: Path) -> None:
    summary = _build(CONFIGS / "data_tiny_models.yaml", tmp_path, 4)
    assert summary["present"] == 4 and "error" not in summary["dropped"], summary
