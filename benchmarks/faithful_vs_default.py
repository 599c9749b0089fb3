"""How far the default (fixed) OmniRef metrics are from the faithful (reference-script) ones.

Scores the same image folders twice with `rewardkit.evaluate`, once with ``faithful=False``
and once with ``faithful=True``, and prints per metric the mean of each mode and their
difference, and the largest per-image difference. This is the table in docs/evaluation.md
("Faithful mode and the default"); it measures agreement, not speed, so it prints no ratio.

    python benchmarks/faithful_vs_default.py RUN_DIR          # a dyref_full.py run folder
    python benchmarks/faithful_vs_default.py RUN_DIR --runs rl --out /tmp/faithful

RUN_DIR is a `python examples/dyref_full.py` output: its test split (data/test/metadata.json)
and images/<run>/ folders. Offline encoders, so it runs anywhere in about a minute per run.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path
from statistics import mean

import rewardkit
from rewardkit.evaluation import Run

METRICS = ("subject", "style", "background", "lighting", "pose")


def per_image(out: Path, run: str) -> dict[int, dict[str, float]]:
    """index → {metric: value} from a run's per-image JSONL."""
    rows: dict[int, dict[str, float]] = {}
    for line in (out / f"scores_{run}.jsonl").read_text().splitlines():
        record = json.loads(line)
        values = dict(record.get("objective", {}))
        if record.get("subject_clip"):
            values["subject"] = (mean(record["subject_clip"]) + mean(record["subject_dino"])) / 2
        rows[int(record["index"])] = values
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, help="a dyref_full.py run folder")
    parser.add_argument(
        "--runs", nargs="+", default=["base", "sft", "rl"], help="image folders under images/"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where the two evaluations go (default: a temp dir)"
    )
    args = parser.parse_args(argv)

    test = args.run_dir / "data" / "test" / "metadata.json"
    if not test.is_file():
        parser.error(f"{test} not found: RUN_DIR must be a dyref_full.py run folder")
    out = args.out or Path(tempfile.mkdtemp(prefix="faithful-"))
    runs = [Run(name, images=args.run_dir / "images" / name) for name in args.runs]
    summaries, images = {}, {}
    for mode in ("default", "faithful"):
        folder = out / mode
        report = rewardkit.evaluate(
            runs, str(test), out_dir=folder, faithful=mode == "faithful", metrics=(*METRICS, "fidelity")
        )
        summaries[mode] = report.summary
        images[mode] = {name: per_image(folder, name) for name in args.runs}

    print("| run | metric | default | faithful | faithful − default | max per-image abs diff |")
    print("|---|---|---|---|---|---|")
    for name in args.runs:
        for metric in METRICS:
            d = summaries["default"]["methods"][name]["objective"].get(metric)
            f = summaries["faithful"]["methods"][name]["objective"].get(metric)
            if d is None or f is None:
                continue
            diffs = [
                abs(images["faithful"][name][i][metric] - row[metric])
                for i, row in images["default"][name].items()
                if metric in row and metric in images["faithful"][name].get(i, {})
            ]
            worst = max(diffs) if diffs else float("nan")
            print(f"| {name} | {metric} | {d:.4f} | {f:.4f} | {f - d:+.4f} | {worst:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
