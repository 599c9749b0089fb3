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
        (["optim.lrr=1"], r"optim\.lrr: unknown key \(did you mean 'lr'\?\); valid keys under 'optim'"),
        (["trian.epochs=1"], r"trian: unknown key \(did you mean 'train'\?\); valid keys at the top level"),
        (["train.epochs=many"], r"train\.epochs: Input should be a valid integer.*\(got 'many'\)"),
        (["train.epochs=0"], r"train\.epochs: Input should be greater than 0 \(got 0\)"),
        (["train.group_size=1"], r"train\.group_size: must be >= 2 for group-relative advantages"),
        (["rollout.kind=euler"], r"rollout\.kind: Input should be 'flow_sde', 'dance_sde'.*\(got 'euler'\)"),
        (["rollout.train_steps=[1, 12]"], r"rollout\.train_steps: must lie in 0 … 9, got \[1, 12\]"),
        (
            ["rollout.train_steps=null", "rollout.num_steps=1"],
            r"rollout\.num_steps: must be >= 2 when train_steps is null",
        ),
        (["rollout.guidance_scale=4"], r"rollout\.guidance_scale: 4\.0 > 1 needs a negative_prompt"),
        (["eval.negative_prompt=null"], r"eval\.guidance_scale: 4\.0 > 1 needs a negative_prompt"),
        (["dar.reward=nope"], r"dar\.reward: 'nope' is not a reward column"),
        (["dar.w_min=6"], r"dar\.w_min: must be <= w_max"),
        (["advantage.clip_range=1.5"], r"advantage\.clip_range: Input should be less than 1"),
        (["ema.decay=1.0"], r"ema\.decay: Input should be less than 1"),
        (["optim.betas=[0.9]"], r"optim\.betas: item 1 is missing"),
        (["optim.betas=[0.9, 1.0]"], r"optim\.betas\.1: Input should be less than 1"),
        (["log.progress=maybe"], r"log\.progress: Input should be a valid boolean"),
        (["data.height=64"], r"data\.height: set both height and width, or neither"),
        (["model.path="], r"model\.path: required"),
        (["rewards=[]"], r"rewards: List should have at least 1 item"),
        (["rewards.1.name=image_similarity"], r"rewards: reward names must be unique"),
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


# ----------------------------------------------------------------------------------------------
# pydantic schema: finite numbers, every error at once, list items in --set, fingerprints, schema
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", ".nan", "inf", "-.inf"])
def test_nan_and_inf_are_refused_where_a_finite_number_is_meant(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^optim\.lr: Input should be a finite number"):
        grpo(f"optim.lr={value}")
    with pytest.raises(ConfigError, match=r"^kl\.beta: Input should be a finite number"):
        grpo(f"kl.beta={value}")
    assert grpo("dar.w_max=.inf").dar.w_max == float("inf")  # documented: no upper bound
    with pytest.raises(ConfigError, match=r"dar\.w_max"):
        grpo("dar.w_max=.nan")


def test_every_mistake_is_reported_at_once(tmp_path: Path) -> None:
    mistakes = {"trian": {"epochs": 2}, "train": {"group_size": -3}, "optim": {"lr": float("nan")}}
    with pytest.raises(ConfigError) as info:
        grpo(**mistakes)
    problems = info.value.problems
    assert len(problems) == 3, problems
    assert problems[0].startswith("optim.lr: Input should be a finite number")
    assert problems[1].startswith("train.group_size: Input should be greater than 0 (got -3)")
    assert problems[2].startswith("trian: unknown key (did you mean 'train'?)")
    assert str(info.value).startswith("3 problems in the config:\n  optim.lr: ")
    # the same from a YAML file, with overrides and required keys adding their own
    path = tmp_path / "three.yaml"
    path.write_text(
        "model: {path: ckpt}\ndata: {train: m.json}\ntrian: {epochs: 2}\ntrain: {group_size: -3}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(GRPOConfig, recipe="grpo", path=path,
                    overrides=["optim.lr=nan", "model.path=", "rewards.5.weight=1", "rollout.kind=euler"])  # fmt: skip
    named = [p.split(":")[0] for p in info.value.problems]
    assert sorted(named) == [
        "model.path",
        "optim.lr",
        "rewards.5",
        "rollout.kind",
        "train.group_size",
        "trian",
    ]


def test_set_addresses_list_items_by_index(tmp_path: Path) -> None:
    config = grpo("rewards.0.weight=0.5", "rewards.1.options.weights=csd.safetensors")
    assert [r.weight for r in config.rewards] == [0.5, 0.8]
    # a mapping merges into the one there, anything else replaces
    assert config.rewards[0].options["pretrained"] == "google/siglip2-base-patch16-384"
    assert config.rewards[1].options == {"weights": "csd.safetensors"}
    assert grpo("rollout.train_steps.1=5").rollout.train_steps == [1, 5, 3]
    # the list the YAML gives is the one indexed
    path = tmp_path / "run.yaml"
    path.write_text("model: {path: c}\ndata: {train: m}\nrewards: [{reward: r, name: image_similarity}]\n")
    config = load_config(GRPOConfig, recipe="grpo", path=path, overrides=["rewards.0.weight=2"])
    assert [(r.reward, r.weight) for r in config.rewards] == [("r", 2.0)]
    with pytest.raises(ConfigError, match=r"^rewards\.1: no such item; rewards holds 1 item\(s\)"):
        load_config(GRPOConfig, recipe="grpo", path=path, overrides=["rewards.1.weight=2"])
    with pytest.raises(ConfigError, match=r"^rewards\.first: no such item"):
        grpo("rewards.first.weight=2")
    with pytest.raises(ConfigError, match=r"^rewards\.0\.wieght: unknown key \(did you mean 'weight'\?\)"):
        grpo("rewards.0.wieght=2")


def test_values_are_not_mutated_by_overrides() -> None:
    values = {**REQUIRED, "rewards": [{"reward": "r", "name": "image_similarity"}]}
    load_config(GRPOConfig, recipe="grpo", values=values, overrides=["rewards.0.weight=3"])
    assert values["rewards"] == [{"reward": "r", "name": "image_similarity"}]


def test_assignments_are_validated() -> None:
    from pydantic import ValidationError

    config = grpo()
    config.train.group_size = 8
    with pytest.raises(ValidationError, match="finite number"):
        config.optim.lr = float("nan")
    with pytest.raises(ValidationError, match=r"no attribute .lrr."):
        config.optim.lrr = 1.0  # type: ignore[attr-defined]


# Computed with the dataclass implementation (before pydantic) for the same configs: a checkpoint
# written before the change still resumes.
FINGERPRINTS = {
    "grpo_default": "1bfc9666bb251f8e",
    "grpo_default_ignore": "d84a87ce57666a81",
    "grpo_tiny": "597205218d4169b3",
    "sft_tiny": "a73fa99c665d3ff6",  # + train.global_batch_size (0.2.0)
    "sft_flux": "cc7d8049f2ce273c",
}
EXAMPLES = Path(__file__).parents[2] / "examples" / "configs"


def test_fingerprints_are_unchanged_by_the_pydantic_schema() -> None:
    grpo_tiny = load_config(GRPOConfig, recipe="grpo", path=EXAMPLES / "grpo_tiny.yaml",
                            overrides=["optim.lr=1e-5", "model.lora_alpha=16", "dar.w_max=.inf",
                                       "optim.betas=[0, 0.99]", "kl.beta=0", "model.options.dtype=bfloat16"])  # fmt: skip
    sft_flux = load_config(SFTConfig, recipe="sft", values={**REQUIRED, "model": {"path": "c", "backbone": "flux2-klein"}},
                           overrides=["train.max_boundary=1", "train.timestep_mu=2"])  # fmt: skip
    got = {
        "grpo_default": config_fingerprint(grpo()),
        "grpo_default_ignore": config_fingerprint(grpo(), ignore=["log", "train.epochs"]),
        "grpo_tiny": config_fingerprint(grpo_tiny),
        "sft_tiny": config_fingerprint(load_config(SFTConfig, recipe="sft", path=EXAMPLES / "sft_tiny.yaml")),
        "sft_flux": config_fingerprint(sft_flux),
    }
    assert got == FINGERPRINTS
    dumped = config_to_dict(grpo_tiny)
    assert dumped["optim"]["betas"] == [0.0, 0.99] and dumped["model"]["lora_alpha"] == 16.0
    assert dumped["dar"]["w_max"] == float("inf") and isinstance(dumped["kl"]["beta"], float)


_KEYWORDS = {"$schema", "$defs", "$ref", "title", "description", "default", "type", "properties",
             "additionalProperties", "required", "items", "prefixItems", "minItems", "maxItems", "anyOf",
             "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}  # fmt: skip
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _schema_errors(value: object, schema: dict, root: dict, path: str = "$") -> list[str]:
    """A JSON Schema check of the keywords in ``_KEYWORDS`` (jsonschema is not a dependency)."""
    if "$ref" in schema:
        return _schema_errors(value, root["$defs"][schema["$ref"].removeprefix("#/$defs/")], root, path)
    if "anyOf" in schema:
        ok = any(not _schema_errors(value, option, root, path) for option in schema["anyOf"])
        return [] if ok else [f"{path}: {value!r} fits none of {schema['anyOf']}"]
    kind = schema.get("type")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    fits = {"integer": number and isinstance(value, int), "number": number}.get(kind or "")
    if kind and not (fits if fits is not None else isinstance(value, _TYPES[kind])):
        return [f"{path}: expected {kind}, got {value!r}"]
    errors = []
    if ("enum" in schema and value not in schema["enum"]) or ("const" in schema and value != schema["const"]):
        errors.append(f"{path}: {value!r} is not allowed")
    for key, holds in (("minimum", lambda v, b: v >= b), ("maximum", lambda v, b: v <= b),
                       ("exclusiveMinimum", lambda v, b: v > b), ("exclusiveMaximum", lambda v, b: v < b)):  # fmt: skip
        if key in schema and not holds(value, schema[key]):
            errors.append(f"{path}: {value!r} violates {key} {schema[key]}")
    if isinstance(value, dict):
        properties, extra = schema.get("properties", {}), schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                errors += _schema_errors(item, properties[key], root, f"{path}.{key}")
            elif extra is False:
                errors.append(f"{path}.{key}: not allowed")
        errors += [f"{path}.{key}: required" for key in schema.get("required", []) if key not in value]
    if isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items")
            errors += _schema_errors(item, sub, root, f"{path}[{i}]") if sub else []
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            errors.append(f"{path}: {len(value)} items")
    return errors


def _keywords(schema: object) -> set[str]:
    if isinstance(schema, dict):
        found = set(schema)
        for key, value in schema.items():
            if key in ("properties", "$defs"):
                found |= set().union(*(_keywords(v) for v in value.values()))
            elif key != "default":
                found |= _keywords(value)
        return found
    if isinstance(schema, list):
        return set().union(set(), *(_keywords(v) for v in schema))
    return set()


@pytest.mark.parametrize("recipe", ["sft", "grpo"])
def test_schema_command_prints_a_schema_that_validates_the_example_configs(
    recipe: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import yaml

    from rewardkit.cli import main

    assert main(["config-schema", recipe]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].startswith("https://json-schema.org/") and schema["type"] == "object"
    assert schema["additionalProperties"] is False
    model = SFTConfig if recipe == "sft" else GRPOConfig
    assert list(schema["properties"]) == list(model.model_fields)
    assert _keywords(schema) <= _KEYWORDS  # the checker below understands every keyword used
    optim = schema["$defs"]["OptimConfig"]["properties"]
    assert optim["lr"]["exclusiveMinimum"] == 0 and optim["lr"]["description"] == "learning rate."
    files = sorted(EXAMPLES.glob(f"{recipe}_*.yaml"))
    assert len(files) >= 2
    for file in files:
        data = yaml.safe_load(file.read_text())
        assert _schema_errors(data, schema, schema) == [], file.name
        load_config(model, recipe=recipe, path=file)  # and the loader agrees
    # the check is not vacuous: a typo, a bad range and a wrong type are caught
    bad = yaml.safe_load((EXAMPLES / f"{recipe}_tiny.yaml").read_text())
    bad["optim"] = {"lrr": 1.0, "eps": -1.0, "betas": [0.9]}
    bad["log"]["progress"] = "maybe"
    assert len(_schema_errors(bad, schema, schema)) == 4
