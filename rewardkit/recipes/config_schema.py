"""``rewardkit config-schema sft|grpo``: the JSON Schema of a recipe config, for editor completion.

Save it next to the YAML files and point the YAML language server at it (VS Code's YAML
extension, Neovim's yamlls, ...) with a first line such as
``# yaml-language-server: $schema=grpo.schema.json``::

    rewardkit config-schema grpo > grpo.schema.json
"""

import argparse
import json
from typing import Any, Final

from pydantic import BaseModel

from rewardkit.recipes.config import GRPOConfig, SFTConfig

__all__ = ["RECIPES", "config_schema", "configure", "run"]

#: Recipe name → its config model.
RECIPES: Final[dict[str, type[BaseModel]]] = {"sft": SFTConfig, "grpo": GRPOConfig}


def config_schema(recipe: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``recipe``'s config, field descriptions included.

    Example:
        >>> schema = config_schema("grpo")
        >>> schema["additionalProperties"], "rewards" in schema["properties"]
        (False, True)
    """
    schema = RECIPES[recipe].model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": f"rewardkit {recipe} config",
    }


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``rewardkit config-schema``."""
    parser.add_argument("recipe", choices=sorted(RECIPES), help="the recipe whose config schema to print")


def run(args: argparse.Namespace) -> int:
    """Print the schema as JSON on stdout."""
    print(json.dumps(config_schema(args.recipe), indent=2, ensure_ascii=False))
    return 0
