"""Typed recipe configs: defaults per backbone, YAML, overrides, and clear errors."""

from pathlib import Path

import pytest

from rewardkit.recipes.config import (
    ConfigError,
    GRPOConfig,
    SFTConfig,
    config_fingerprint,
    config_to_dict,
    load_config,
)

REQUIRED = {"model": {"path": "ckpt"}, "data": {"train": "metadata.json"}}


def grpo(*overrides: str, **values: dict) -> GRPOConfig:
    merged = {k: {**REQUIRED.get(k, {}), **values.get(k, {})} for k in {*REQUIRED, *values}}
    return load_config(GRPOConfig, recipe="grpo", values=merged, overrides=overrides)


def test_reference_defaults_and_per_backbone_defaults() -> None:
    qwen = grpo()
    assert qwen.model.backbone == "qwen-image-edit-2511" and qwen.model.lora_rank == 64
    assert qwen.model.target_modules is None  # the backbone's own list: one source of truth
    assert (qwen.train.group_size, qwen.train.prompts_per_epoch, qwen.train.gradient_step_per_epoch) == (
        24,
        24,
        2,
    )
    assert (qwen.advantage.clip_range, qwen.advantage.clip, qwen.kl.beta, qwen.kl.type) == (
        1e-4,
        5.0,
        0.04,
        "v",
    )
    assert (qwen.rollout.num_steps, qwen.rollout.train_steps, qwen.rollout.noise_level) == (
        10,
        [1, 2, 3],
        1.0,
    )
    assert (qwen.ema.decay, qwen.ema.update_interval, qwen.optim.lr, qwen.optim.weight_decay) == (
        0.9,
        4,
        3e-4,
        1e-4,
    )
    assert [(r.name, r.weight) for r in qwen.rewards] == [("image_similarity", 1.0), ("csd_score", 0.8)]
    flux = grpo("model.backbone=flux2-klein")
    assert flux.model.lora_rank == 32 and flux.model.target_modules is None
    sft = load_config(
        SFTConfig, recipe="sft", values={**REQUIRED, "model": {"path": "c", "backbone": "flux2-klein"}}
    )
    assert sft.model.lora_rank == 32 and sft.train.timestep_shift_terminal is None
    assert sft.train.timestep_mu == pytest.approx(1.702, abs=1e-3) and sft.optim.lr == 1e-4
    sft_qwen = load_config(SFTConfig, recipe="sft", values=REQUIRED)
    assert (
        sft_qwen.train.timestep_mu,
        sft_qwen.train.timestep_shift_terminal,
        sft_qwen.optim.weight_decay,
    ) == (0.8, 0.02, 0.01)


def test_yaml_then_values_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "model: {path: ckpt, options: {dtype: bfloat16}}\n"
        "data: {train: m.json}\n"
        "optim: {lr: 1e-5, betas: [0.8, 0.9]}\n"  # PyYAML reads 1e-5 as a string; accepted as a float
        "train: {group_size: 6, epochs: 3}\n"
    )
    config = load_config(
        GRPOConfig, recipe="grpo", path=path, values={"train": {"epochs": 5}},
        overrides=["train.group_size=8", "rollout.train_steps=[0, 1]", "model.options.device=cpu",
                   "rewards=[{reward: offline_similarity, name: image_similarity}]"],
    )  # fmt: skip
    assert config.optim.lr == 1e-5 and config.optim.betas == (0.8, 0.9)
    assert (config.train.epochs, config.train.group_size, config.rollout.train_steps) == (5, 8, [0, 1])
    assert config.model.options == {"dtype": "bfloat16", "device": "cpu"}
    assert config.rewards[0].reward == "offline_similarity" and config.rewards[0].weight == 1.0
    assert config_to_dict(config)["train"]["group_size"] == 8


def test_fingerprint_ignores_only_the_given_keys() -> None:
    a, b, c = grpo(), grpo("log.output_dir=elsewhere"), grpo("optim.lr=0.1")
    ignore = ["log"]
    assert config_fingerprint(a, ignore=ignore) == config_fingerprint(b, ignore=ignore)
    assert config_fingerprint(a, ignore=ignore) != config_fingerprint(c, ignore=ignore)
    assert config_fingerprint(a) != config_fingerprint(b)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lrr=1"], r"unknown key 'optim.lrr' \(did you mean 'lr'\?\)"),
        (["trian.epochs=1"], r"unknown key 'trian' \(did you mean 'train'\?\)"),
        (["train.epochs=many"], "train.epochs: expected an integer"),
        (["train.epochs=0"], "train.epochs must be >= 1"),
        (["train.group_size=1"], "group_size must be >= 2"),
        (["rollout.kind=euler"], r"rollout.kind: must be one of \['flow_sde'"),
        (["rollout.train_steps=[1, 12]"], r"train_steps must lie in 0 … 9"),
        (["rollout.guidance_scale=4"], "needs rollout.negative_prompt"),
        (["dar.reward=nope"], "dar.reward='nope' is not a reward column"),
        (["advantage.clip_range=1.5"], "0 < advantage.clip_range < 1"),
        (["ema.decay=1.0"], r"ema.decay must be in \[0, 1\)"),
        (["optim.betas=[0.9]"], "optim.betas: expected 2 values"),
        (["log.progress=maybe"], "log.progress: expected true or false"),
        (["data.height=64"], "set both data.height and data.width"),
        (["model.path="], "model.path is required"),
        (["justtext"], "must look like section.key=value"),
    ],
)
def test_invalid_values_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        grpo(*overrides)


def test_missing_yaml_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(GRPOConfig, recipe="grpo", path=tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(GRPOConfig, recipe="grpo", path=bad)


def test_recipe_defaults_come_from_the_backbone_plug_in(monkeypatch) -> None:
    import dataclasses

    from rewardkit_backbones.qwen_image_edit import PLUGIN, QwenImageEdit

    from rewardkit.backbone import registry

    assert grpo().model.lora_rank == PLUGIN.recipe_defaults["grpo"]["model"]["lora_rank"]
    patched = dataclasses.replace(PLUGIN, recipe_defaults={"grpo": {"model": {"lora_rank": 7}}})
    monkeypatch.setattr(registry, "get_plugin", lambda name: patched)
    assert grpo().model.lora_rank == 7
    # the recipes and backbone.add_adapter() use the plug-in's one target list
    assert len(QwenImageEdit.lora_target_modules) == 12 and "img_mod.1" in QwenImageEdit.lora_target_modules


def test_unknown_backbone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"model\.backbone"):
        grpo(model={"path": "ckpt", "backbone": "no-such-model"})
