"""``rewardkit data build``: make a training set with the construction pipeline.

Example::

    rewardkit data build --config examples/configs/data_offline.yaml
    rewardkit data build --config data.yaml --num-shards 8 --shard 3   # one of 8 machines
"""

import argparse
import logging
import sys

__all__ = ["configure", "run"]

logger = logging.getLogger("rewardkit.data")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``rewardkit data`` arguments."""
    from rewardkit.recipes.config_loading import add_config_arguments

    parser.add_argument(
        "action", choices=["build"], help="build: run (or resume) the pipeline and merge its shards"
    )
    add_config_arguments(
        parser, what="build config (default: the offline procedural build)", set_example="records.count=20"
    )
    parser.add_argument("--out", help="output folder (shortcut for --set output=...)")
    parser.add_argument("--num-shards", type=int, default=1, help="split the records over this many runs")
    parser.add_argument("--shard", type=int, default=0, help="which shard this run makes (0-based)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.epilog = (
        "A re-run with the same config skips finished records; a killed run loses at most the record "
        "in flight. Every run merges the records present into OUT/{train,test}/metadata.json "
        "(the OmniRef-Bench format the recipes read) and OUT/summary.json (what each filter dropped)."
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``rewardkit data``: 0 on success, 2 on a config error."""
    from rewardkit.data.pipeline.config import DataConfig, build_providers
    from rewardkit.data.pipeline.runner import finalize, plan_records, run_shard
    from rewardkit.recipes.config_loading import ConfigError, load_model

    logging.basicConfig(level=logging.INFO, format="[rewardkit data] %(message)s")
    overrides = list(args.overrides) + ([f"output={args.out}"] if args.out else [])
    try:
        config = load_model(DataConfig, path=args.config, overrides=overrides)
        if args.num_shards < 1 or not 0 <= args.shard < args.num_shards:
            raise ConfigError(
                f"--shard must be in 0 … {args.num_shards - 1} for --num-shards {args.num_shards}"
            )
        providers = build_providers(config)
    except (ConfigError, ValueError) as err:
        print(f"rewardkit data: {err}", file=sys.stderr)
        return 2
    records = config.records
    plans = plan_records(
        records.count,
        categories=records.category_counts(),
        seed=records.seed,
        test_fraction=records.test_fraction,
        size=records.size,
    )
    try:
        report = run_shard(
            plans,
            providers,
            config.output,
            num_shards=args.num_shards,
            shard=args.shard,
            progress=not args.quiet,
        )
        summary = finalize(config.output, plans)
    except OSError as err:  # full disk, unwritable folder: one line naming the file
        where = getattr(err, "filename", None) or config.output
        print(f"rewardkit data: cannot write {where}: {err.strerror or err}", file=sys.stderr)
        return 1
    logger.info(
        "shard %d/%d: %d records made, %d kept, %d already done",
        args.shard + 1,
        args.num_shards,
        report.made,
        report.kept,
        report.skipped,
    )
    logger.info(
        "%s: %d of %d planned records present; kept train %d, test %d; dropped %s",
        config.output,
        summary["present"],
        summary["planned"],
        summary["kept"]["train"],
        summary["kept"]["test"],
        summary["dropped"] or "none",
    )
    return 0
