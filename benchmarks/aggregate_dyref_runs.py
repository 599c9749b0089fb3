"""Seeds and ablation tables from several `examples/dyref_full.py` run folders.

    python benchmarks/aggregate_dyref_runs.py RUN_DIR [RUN_DIR ...]

Prints, per run (seed), base → SFT → RL on Obj Avg, PSNR, SSIM and the diversity ratio, and
whether each stage went the right way (SFT > base and RL > SFT on PSNR and Obj Avg, RL
diversity ≥ 0.8 × SFT's). For the runs made with ``--ablation`` it also prints the Tab. 6 rows
(SFT only, full, without DAR, without DRS, without the style reward) as mean ± half the range
over those seeds. "Without lighting" is the mean of the other four objective columns (on
OmniRef-mini the targets themselves score below the base on lighting; see the tutorial). The
tutorial's tables are this script's output.
"""

import argparse
import json
import sys
from pathlib import Path
from statistics import mean
from typing import Any

ROWS = ("sft_only", "full", "no_dar", "no_drs", "no_style")


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _metrics(summary: dict[str, Any], method: str) -> dict[str, float]:
    m = summary["methods"][method]
    obj = m["objective"]
    fid = m.get("fidelity") or {}
    without_lighting = [obj[k] for k in ("subject", "style", "background", "pose") if obj.get(k) is not None]
    return {
        "obj": float(obj["avg"] if obj.get("avg") is not None else obj["avg_present"]),
        "obj_no_light": sum(without_lighting) / len(without_lighting),
        "psnr": float(fid.get("psnr", float("nan"))),
        "ssim": float(fid.get("ssim", float("nan"))),
        "div": float(fid.get("diversity_ratio", float("nan"))),
    }


def _spread(values: list[float]) -> str:
    return f"{mean(values):.4f} ± {(max(values) - min(values)) / 2:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="dyref_full.py run folders")
    args = parser.parse_args(argv)

    header = "| seed | Obj Avg base → SFT → RL | without lighting | PSNR base → SFT → RL (dB) | SSIM RL |"
    print(header + " Div. ratio SFT → RL | direction |")
    print("|---|---|---|---|---|---|---|")
    ablations: dict[str, dict[str, list[float]]] = {row: {} for row in ROWS}
    all_ok = True
    for run in args.runs:
        summary = _load(run / "summary.json")
        seed = _load(run / "run.json")["args"]["seed"]
        b, s, r = (_metrics(summary, k) for k in ("base", "sft", "rl"))
        ok = s["psnr"] > b["psnr"] and r["psnr"] > s["psnr"] and s["obj"] > b["obj"] and r["obj"] > s["obj"]
        ok = ok and r["div"] >= 0.8 * s["div"]
        all_ok &= ok
        print(
            f"| {seed} | {b['obj']:.4f} → {s['obj']:.4f} → {r['obj']:.4f} | "
            f"{b['obj_no_light']:.4f} → {s['obj_no_light']:.4f} → {r['obj_no_light']:.4f} | "
            f"{b['psnr']:.2f} → {s['psnr']:.2f} → {r['psnr']:.2f} | {r['ssim']:.3f} | "
            f"{s['div']:.2f} → {r['div']:.2f} | {'yes' if ok else 'NO'} |"
        )
        ablation = run / "ablation" / "summary.json"
        if ablation.is_file():
            rows = _load(ablation)
            for row in ROWS:
                if row in rows["methods"]:
                    for key, value in _metrics(rows, row).items():
                        ablations[row].setdefault(key, []).append(value)
    print(f"\nall seeds in the expected direction: {'yes' if all_ok else 'no'}")
    if any(ablations[row] for row in ROWS):
        n = max(len(v.get("obj", [])) for v in ablations.values())
        print(f"\nTab. 6 rows, mean ± half-range over {n} seeds:\n")
        print("| setting | Obj Avg | without lighting | PSNR (dB) | SSIM | Div. ratio |")
        print("|---|---|---|---|---|---|")
        for row in ROWS:
            v = ablations[row]
            if v:
                cells = " | ".join(_spread(v[key]) for key in ("obj", "obj_no_light", "psnr", "ssim", "div"))
                print(f"| {row} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
