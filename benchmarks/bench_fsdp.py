"""GRPO epochs on N processes, model replicated (DDP) vs frozen base sharded (FSDP2), same run.

Launches ``rewardkit grpo`` twice per round with ``accelerate launch`` and the two example
configs (``examples/configs/accelerate_ddp.yaml`` and ``accelerate_fsdp.yaml``), alternating
them for ``--repeats`` rounds, on a tiny offline checkpoint and a tiny OmniRef-mini split, and
reports samples/s of a whole epoch and of its rollouts (median over the epochs after the first)
and the FSDP / DDP ratio. FSDP all-gathers every block in every forward (and again in
backward), so on tiny models the ratio is the price of that communication; on real backbones it
buys the memory ``rewardkit plan`` prints.

    python benchmarks/bench_fsdp.py                       # 2 CPU processes (gloo), tiny Qwen
    python benchmarks/bench_fsdp.py --processes 8         # on a GPU node: 8 GPUs (NCCL)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

import rewardkit
from rewardkit.data.omniref_mini import write_omniref_mini

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"DDP": "accelerate_ddp.yaml", "FSDP": "accelerate_fsdp.yaml"}
AREA = {"qwen-image-edit-2511": "vae_reference_area", "flux2-klein": "reference_area"}


def grpo_config(args: argparse.Namespace, ckpt: Path, data: Path, out: Path) -> dict[str, object]:
    """A small GRPO run whose groups span the processes (the toy ``redness`` reward)."""
    return {
        "model": {"backbone": args.backbone, "path": str(ckpt), "lora_rank": 8,
                  "options": {AREA[args.backbone]: 64 * 64}},
        "data": {"train": str(data), "height": args.size, "width": args.size, "cache": True},
        "train": {"epochs": args.epochs, "prompts_per_epoch": 2, "group_size": 2 * args.processes,
                  "gradient_step_per_epoch": 2, "per_device_batch_size": 1},
        "rollout": {"num_steps": 4, "train_steps": [0, 1, 2], "num_train_steps": 3, "micro_batch": 1},
        "rewards": [{"reward": "redness", "name": "redness"}],
        "dar": {"reward": "redness"},
        "eval": {"every": 0},
        "log": {"output_dir": str(out), "progress": False, "plot": False, "tensorboard": False},
        "extra_imports": ["tests.recipes.toy_rewards"],
    }  # fmt: skip


def run(args: argparse.Namespace, strategy: str, config: Path, port: int) -> list[dict[str, float]]:
    """One launch; the per-epoch metrics records."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(REPO / "examples" / "configs" / CONFIGS[strategy]), "--num_processes", str(args.processes),
        "--main_process_port", str(port), "-m", "rewardkit.cli", "grpo", "--config", str(config),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{REPO}:{REPO / 'backbones'}"}
    env.setdefault("OMP_NUM_THREADS", "1")
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{strategy} run failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    out = Path(yaml.safe_load(config.read_text())["log"]["output_dir"])
    return [
        json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="qwen-image-edit-2511", choices=sorted(AREA))
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--size", type=int, default=32, help="target side in pixels")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is warm-up)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating DDP/FSDP rounds")
    args = parser.parse_args()

    rates: dict[str, dict[str, list[float]]] = {s: {"epoch": [], "rollout": []} for s in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ckpt = rewardkit.make_tiny_checkpoint(args.backbone, root / "ckpt")
        data = write_omniref_mini(root / "data", n_train=8, n_test=1, size=64)["train"]
        samples = 2 * 2 * args.processes
        for round_ in range(args.repeats):
            for k, strategy in enumerate(CONFIGS):
                out = root / f"{strategy}{round_}"
                config = root / f"{strategy}{round_}.yaml"
                config.write_text(yaml.safe_dump(grpo_config(args, ckpt, data, out)))
                for record in run(args, strategy, config, 29700 + 2 * round_ + k)[1:]:
                    rates[strategy]["epoch"].append(samples / record["time/epoch"])
                    rates[strategy]["rollout"].append(samples / record["time/rollout"])
                print(f"round {round_} {strategy}: done", flush=True)

    print(
        f"\nGRPO on tiny {args.backbone}, {args.processes} processes, {args.size}² targets, "
        f"{samples} samples/epoch"
    )
    print(f"{'strategy':<10}{'epoch samples/s':>18}{'rollout samples/s':>20}")
    med = {s: {k: statistics.median(v) for k, v in r.items()} for s, r in rates.items()}
    for strategy in CONFIGS:
        print(f"{strategy:<10}{med[strategy]['epoch']:>18.2f}{med[strategy]['rollout']:>20.2f}")
    print(
        f"FSDP / DDP: epoch ×{med['FSDP']['epoch'] / med['DDP']['epoch']:.2f}, "
        f"rollout ×{med['FSDP']['rollout'] / med['DDP']['rollout']:.2f}"
    )


if __name__ == "__main__":
    main()
