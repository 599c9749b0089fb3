"""The ``rewardkit`` command: one entry point, one subcommand per recipe.

Subcommands live in their own modules and are imported only when chosen, so ``rewardkit --help``
stays fast and the core never imports diffusers. A subcommand module provides
``configure(parser)`` (adds its arguments) and ``run(args) -> int`` (the exit status).
"""

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Final

__all__ = ["SUBCOMMANDS", "main"]

#: Subcommand name → (module, one-line help).
SUBCOMMANDS: Final[dict[str, tuple[str, str]]] = {
    "sft": ("rewardkit.recipes.sft", "Stage I: supervised flow-matching fine-tuning of a LoRA adapter"),
    "grpo": ("rewardkit.recipes.grpo", "Stage II: Flow-GRPO with GDPO advantages, DAR and DRS"),
    "eval": ("rewardkit.evaluation.cli", "OmniRef-Bench-style evaluation: tables, JSON summary, plots"),
    "data": ("rewardkit.data.pipeline.cli", "build a training set with the data construction pipeline"),
    "plan": (
        "rewardkit.planning.cli",
        "GPU memory plan of LoRA training for a backbone (meta device, no weights)",
    ),
    "config-schema": (
        "rewardkit.recipes.config_schema",
        "print the JSON Schema of the sft or grpo config (editor completion of YAML files)",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the chosen subcommand."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="rewardkit",
        description="Reward modeling and RL fine-tuning for flow-matching image models.",
        epilog="Run 'rewardkit <command> --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not args_list or args_list[0] not in SUBCOMMANDS:
        parser.parse_args(args_list or ["--help"])  # prints help or the argparse error and exits
        return 2
    name = args_list[0]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    command = argparse.ArgumentParser(prog=f"rewardkit {name}", description=SUBCOMMANDS[name][1])
    module.configure(command)
    return int(module.run(command.parse_args(args_list[1:])))


def _version() -> str:
    from rewardkit import __version__

    return __version__


if __name__ == "__main__":
    raise SystemExit(main())
