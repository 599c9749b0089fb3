r"""Resolving a recipe config: defaults, backbone defaults, YAML, flags and ``--set`` overrides.

The schema (sections, fields, ranges, relations) lives in
[`rewardkit.recipes.config`][rewardkit.recipes.config]; this module builds the nested mapping
that is checked against it. A config is resolved in this order (later wins):

1. the schema's defaults (DyRef's published settings);
2. the defaults of the ``model.backbone`` plug-in (LoRA rank, SFT epochs and timestep grid, ...;
   [`backbone_recipe_defaults`][rewardkit.recipes.config_loading.backbone_recipe_defaults]);
3. a YAML file (``--config run.yaml``), nested like the schema;
4. explicit flags (``--output-dir``, ``--epochs``, ...);
5. ``--set key.path=value`` overrides, the value parsed as YAML (``--set train.group_size=8``,
   ``--set rollout.train_steps=[1,2]``, ``--set optim.lr=1e-4``); a list item is addressed by its
   index (``--set rewards.0.weight=0.5``).

Every problem of a config is collected and reported at once in one
[`ConfigError`][rewardkit.recipes.config_loading.ConfigError], one ``section.key: message`` line
each; an unknown key comes with the valid keys and the closest match. YAML support needs PyYAML
(imported only when a file or an override is read).
"""

import argparse
import copy
import difflib
import hashlib
import importlib
import json
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

__all__ = [
    "ConfigError",
    "add_config_arguments",
    "apply_override",
    "backbone_recipe_defaults",
    "config_fingerprint",
    "config_to_dict",
    "deep_merge",
    "load_config",
    "load_model",
]

M = TypeVar("M", bound=BaseModel)

#: Keys that must be set (the schema's default is an empty string), with what they hold.
_REQUIRED: dict[tuple[str, str], str] = {
    ("model", "path"): "required: a local diffusers checkpoint directory or a hub id (for a tiny offline "
    "one: python -c \"import rewardkit; rewardkit.make_tiny_checkpoint('flux2-klein', 'tiny')\")",
    ("data", "train"): "required: an OmniRef-Bench-format metadata.json",
}

#: Keys that name a registered function: key → name of the table in ``rewardkit.recipes.registry``.
_REGISTERED: dict[tuple[str, str], str] = {
    ("advantage", "estimator"): "ADVANTAGES",
    ("advantage", "policy_loss"): "POLICY_LOSSES",
    ("kl", "type"): "KLS",
}


class ConfigError(ValueError):
    """An invalid configuration: unknown key, wrong type, out-of-range or inconsistent values.

    The message lists every problem found, one ``section.key: message`` line each.

    Attributes:
        problems: the problems, one ``section.key: message`` string each. The schema's
            cross-field checks raise it with keys relative to the checked section.
    """

    def __init__(self, *problems: str) -> None:
        self.problems: tuple[str, ...] = problems
        if len(problems) == 1:
            text = problems[0]
        else:
            text = f"{len(problems)} problems in the config:\n" + "\n".join(f"  {p}" for p in problems)
        super().__init__(text)


# ----------------------------------------------------------------------------------------------
# layers
# ----------------------------------------------------------------------------------------------


def backbone_recipe_defaults(recipe: str, backbone: str) -> Mapping[str, Any]:
    """The backbone plug-in's overrides of ``recipe``'s schema defaults (empty if none).

    Read from [`BackbonePlugin.recipe_defaults`][rewardkit.backbone.BackbonePlugin], so a
    third-party backbone ships its own tuning and the core holds none.

    Raises:
        ConfigError: ``backbone`` is not an installed backbone.
    """
    from rewardkit.backbone.registry import get_plugin

    try:
        plugin = get_plugin(backbone)
    except (KeyError, ValueError, TypeError) as err:
        raise ConfigError(f"model.backbone: {err}") from err
    return plugin.recipe_defaults.get(recipe, {})


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` merged into a copy of ``base``: nested mappings merge, other values replace.

    Example:
        >>> deep_merge({"train": {"epochs": 6, "seed": 0}}, {"train": {"epochs": 2}})
        {'train': {'epochs': 2, 'seed': 0}}
    """
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` → ``(["a", "b"], yaml(value))``."""
    import yaml

    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.strip() for p in parts):
        raise ConfigError(f"override {text!r} must look like section.key=value (e.g. train.group_size=8)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({err})") from err
    return [p.strip() for p in parts], value


def apply_override(data: dict[str, Any], text: str) -> None:
    """Apply one ``key.path=value`` override to the nested ``data`` in place.

    The value is parsed as YAML. A mapping value merges into a mapping already there; any other
    value replaces. A digit addresses an item of a list (``rewards.0.weight=0.5``); a missing
    section is created (the schema then rejects an unknown one).

    Raises:
        ConfigError: malformed override, or a list index out of range.

    Example:
        >>> data = {"rewards": [{"weight": 1.0}], "train": {"epochs": 6}}
        >>> apply_override(data, "rewards.0.weight=0.5"); apply_override(data, "train.epochs=2")
        >>> data
        {'rewards': [{'weight': 0.5}], 'train': {'epochs': 2}}
    """
    parts, value = _parse_override(text)
    cursor: Any = data
    for depth, part in enumerate(parts):
        key: Any = part
        if isinstance(cursor, list):
            if not part.isdigit() or int(part) >= len(cursor):
                where, parent = ".".join(parts[: depth + 1]), ".".join(parts[:depth])
                raise ConfigError(
                    f"{where}: no such item; {parent} holds {len(cursor)} item(s), numbered from 0 "
                    f"(override {text!r})"
                )
            key = int(part)
        if depth == len(parts) - 1:
            old = cursor[key] if isinstance(cursor, list) else cursor.get(key)
            merge = isinstance(old, Mapping) and isinstance(value, Mapping)
            cursor[key] = deep_merge(old, value) if merge else value
            return
        below = cursor[key] if isinstance(cursor, list) else cursor.get(key)
        if not isinstance(below, dict | list):
            below = cursor[key] = {}
        cursor = below


def _read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {str(file)!r} does not exist")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{file} is not a UTF-8 text file (YAML expected): {err.reason}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{file} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file} must hold a mapping of config sections, got {type(data).__name__}")
    return data


def _with_overrides(data: Mapping[str, Any], overrides: Sequence[str], problems: list[str]) -> dict[str, Any]:
    """A deep copy of ``data`` with the ``overrides`` applied; their errors go to ``problems``."""
    out = copy.deepcopy(dict(data))
    for text in overrides:
        try:
            apply_override(out, text)
        except ConfigError as err:
            problems.extend(err.problems)
    return out


def _get(data: Mapping[str, Any], *keys: str) -> Any:
    cursor: Any = data
    for key in keys:
        cursor = cursor.get(key) if isinstance(cursor, Mapping) else None
    return cursor


# ----------------------------------------------------------------------------------------------
# loading and checking
# ----------------------------------------------------------------------------------------------


def load_config(
    cls: type[M],
    *,
    recipe: Literal["sft", "grpo"],
    path: str | Path | None = None,
    values: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
) -> M:
    """Resolve a recipe config: defaults ← backbone defaults ← YAML ← ``values`` ← overrides.

    Args:
        cls: [`SFTConfig`][rewardkit.recipes.config.SFTConfig] or
            [`GRPOConfig`][rewardkit.recipes.config.GRPOConfig].
        recipe: ``"sft"`` or ``"grpo"`` (selects the per-backbone defaults).
        path: optional YAML file.
        values: nested values from explicit flags (e.g. ``{"log": {"output_dir": "runs/a"}}``).
        overrides: ``key.path=value`` strings (values parsed as YAML, list items by index).

    Returns:
        The validated config.

    Raises:
        ConfigError: every problem found (unknown keys, wrong types, invalid values, unregistered
            names), one ``section.key: message`` line each.

    Example:
        >>> from rewardkit.recipes.config import GRPOConfig
        >>> cfg = load_config(GRPOConfig, recipe="grpo", values={"model": {"backbone": "flux2-klein",
        ...     "path": "tiny"}, "data": {"train": "m.json"}}, overrides=["train.group_size=8"])
        >>> cfg.train.group_size, cfg.model.lora_rank
        (8, 32)
    """
    problems: list[str] = []
    raw: dict[str, Any] = _read_yaml(path) if path is not None else {}
    raw = deep_merge(raw, values or {})
    defaults = config_to_dict(cls())
    # The backbone (whose defaults form layer 2) may itself be set by any later layer.
    backbone = _get(_with_overrides(deep_merge(defaults, raw), overrides, []), "model", "backbone")
    recipe_defaults: Mapping[str, Any] = {}
    if backbone is not None:
        try:
            recipe_defaults = backbone_recipe_defaults(recipe, str(backbone))
        except ConfigError as err:
            problems.extend(err.problems)
    data = _with_overrides(deep_merge(deep_merge(defaults, recipe_defaults), raw), overrides, problems)
    config: M | None = None
    try:
        config = cls.model_validate(data)
    except ValidationError as err:
        problems.extend(_describe(err, cls))
    for (section, key), message in _REQUIRED.items():
        if _get(data, section, key) == "":
            problems.append(f"{section}.{key}: {message}")
    problems.extend(_unregistered(data))
    if problems or config is None:
        raise ConfigError(*problems)
    return config


def add_config_arguments(parser: argparse.ArgumentParser, *, what: str, set_example: str) -> None:
    """``--config YAML`` and repeatable ``--set KEY=VALUE``: how every command takes its config.

    Args:
        parser: the command's parser.
        what: what the YAML file holds (``--help`` text).
        set_example: an override shown in ``--help``, e.g. ``"optim.lr=1e-4"``.
    """
    parser.add_argument("--config", metavar="YAML", help=what)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override one config value, value parsed as YAML (repeatable), e.g. --set {set_example}",
    )


def load_model(cls: type[M], *, path: str | Path | None = None, overrides: Sequence[str] = ()) -> M:
    """Any config model from YAML and ``--set`` overrides: defaults ← YAML ← overrides.

    The recipes add their backbone layer in [`load_config`][rewardkit.recipes.config_loading.load_config];
    other commands (``rewardkit data build``) read their config with this.

    Raises:
        ConfigError: every problem found, one ``section.key: message`` line each.
    """
    problems: list[str] = []
    raw: dict[str, Any] = _read_yaml(path) if path is not None else {}
    data = _with_overrides(raw, overrides, problems)
    config: M | None = None
    try:
        config = cls.model_validate(data)
    except ValidationError as err:
        problems.extend(_describe(err, cls))
    if problems or config is None:
        raise ConfigError(*problems)
    return config


def _unregistered(data: Mapping[str, Any]) -> list[str]:
    """Problems with the names that must be registered (after importing ``extra_imports``)."""
    named = {k: v for k in _REGISTERED if isinstance(v := _get(data, *k), str)}
    if not named:
        return []
    from rewardkit.recipes import registry  # it imports the schema for its config types

    problems = []
    extra = data.get("extra_imports")
    for module in extra if isinstance(extra, list) else []:
        try:
            importlib.import_module(str(module))
        except ImportError as err:
            problems.append(f"extra_imports: cannot import {module!r}: {err}")
    for (section, key), name in named.items():
        try:
            getattr(registry, _REGISTERED[section, key]).get(name)
        except ValueError as err:
            problems.append(f"{section}.{key}: {err}")
    return problems


def _dotted(loc: Sequence[str | int]) -> str:
    return ".".join(str(part) for part in loc)


def _short(value: Any, width: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _section_model(cls: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class of the section at ``loc`` (list indices skipped), or None."""
    model: type[BaseModel] | None = cls
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model is not None else None
        model = _model_in(field.annotation) if field is not None else None
    return model


def _model_in(tp: Any) -> type[BaseModel] | None:
    """The model class in an annotation such as ``X``, ``list[X]`` or ``X | None``."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in typing.get_args(tp):
        if (found := _model_in(arg)) is not None:
            return found
    return None


def _describe(err: ValidationError, cls: type[BaseModel]) -> list[str]:
    """One ``section.key: message`` line per problem pydantic found."""
    out: list[str] = []
    for error in err.errors(include_url=False):
        loc, kind = error["loc"], error["type"]
        where = _dotted(loc)
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, ConfigError):  # a cross-field check: keys relative to the section
            out.extend(f"{where}.{p}" if where else p for p in cause.problems)
        elif kind == "extra_forbidden":
            model = _section_model(cls, loc[:-1])
            names = list(model.model_fields) if model is not None else []
            close = difflib.get_close_matches(str(loc[-1]), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            parent = f"under {_dotted(loc[:-1])!r}" if len(loc) > 1 else "at the top level"
            out.append(f"{where}: unknown key{hint}; valid keys {parent}: {names}")
        elif kind == "missing" and loc and isinstance(loc[-1], int):
            out.append(f"{_dotted(loc[:-1])}: item {loc[-1]} is missing (got {_short(error['input'])})")
        elif kind == "value_error":
            out.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
        else:
            out.append(f"{where}: {error['msg']} (got {_short(error['input'])})")
    return out


# ----------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------


def config_to_dict(config: BaseModel) -> dict[str, Any]:
    """The config as plain nested dicts and lists (YAML/JSON-ready; ``inf`` stays a float)."""
    out: dict[str, Any] = json.loads(json.dumps(config.model_dump()))
    return out


def config_fingerprint(config: BaseModel, *, ignore: Sequence[str] = ()) -> str:
    """SHA-256 (16 hex digits) of the config, without the dotted keys in ``ignore``.

    Used to refuse resuming a checkpoint written with a different configuration.
    """
    data = config_to_dict(config)
    for dotted in ignore:
        parts = dotted.split(".")
        cursor: Any = data
        for part in parts[:-1]:
            cursor = cursor.get(part, {}) if isinstance(cursor, dict) else {}
        if isinstance(cursor, dict):
            cursor.pop(parts[-1], None)
    text = json.dumps(data, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
