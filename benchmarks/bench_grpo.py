"""Benchmark a GRPO epoch of the ``rewardkit grpo`` recipe: fused vs eager log-prob, same run.

The recipe (``rewardkit.recipes.grpo.train``) runs on a tiny offline checkpoint
(``rewardkit.make_tiny_checkpoint``) and a tiny OmniRef-mini split, once with the fused SDE
log-prob (``rollout.backend=auto``: the Triton kernel on CUDA, the chunked CPU kernel otherwise)
and once with the eager formulation (``rollout.backend=eager``), alternating the two for
``--repeats`` rounds. It reports samples/s of a whole epoch (rollouts, rewards, the policy
update) and of the update phase alone, where the log-prob runs, as medians over the epochs after
the first (warm-up) one. The reward is the mean pixel value (negligible cost), so the numbers are
about the trainer.

On the tiny backbones the transformer is so small that the log-prob is a visible part of the
update at large latents (``--size``); with real 20B / 9B backbones the transformer dominates
and the fused kernel's gain is mostly memory (see ``bench_sde_logprob.py``).

    python benchmarks/bench_grpo.py                 # Qwen tiny, 64², 3 epochs × 2 rounds
    python benchmarks/bench_grpo.py --quick         # one short round
    python benchmarks/bench_grpo.py --backbone flux2-klein --size 128 --device cpu
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import rewardkit
from rewardkit.data.omniref_mini import write_omniref_mini
from rewardkit.recipes.config import GRPOConfig, load_config
from rewardkit.recipes.grpo import train
from rewardkit.rewards import REWARDS, RewardOutput


class MeanPixel:
    """A negligible-cost reward: the mean pixel value."""

    name = "mean_pixel"

    def __call__(self, images: Any, contexts: Any) -> RewardOutput:
        scores = torch.stack([torch.as_tensor(img).float().mean() for img in images])
        return RewardOutput(scores, {"sim_raw": scores})


REWARDS["mean_pixel"] = lambda **_: MeanPixel()

AREA = {"qwen-image-edit-2511": "vae_reference_area", "flux2-klein": "reference_area"}


def config(args: argparse.Namespace, ckpt: Path, data: Path, out: Path, backend: str) -> GRPOConfig:
    values = {
        "model": {"backbone": args.backbone, "path": str(ckpt), "lora_rank": 8,
                  "options": {"device": args.device, AREA[args.backbone]: 64 * 64}},
        "data": {"train": str(data), "height": args.size, "width": args.size, "cache": True},
        "train": {"epochs": args.epochs, "prompts_per_epoch": args.prompts, "group_size": args.group_size,
                  "gradient_step_per_epoch": 2, "per_device_batch_size": args.group_size},
        "rollout": {"num_steps": args.num_steps, "train_steps": [0, 1, 2], "num_train_steps": 3,
                    "backend": backend},
        "rewards": [{"reward": "mean_pixel", "name": "mean_pixel"}],
        "dar": {"reward": "mean_pixel"},
        "kl": {"beta": 0.0},
        "eval": {"every": 0},
        "log": {"output_dir": str(out), "progress": False, "plot": False, "tensorboard": False},
    }  # fmt: skip
    return load_config(GRPOConfig, recipe="grpo", values=values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="qwen-image-edit-2511", choices=sorted(AREA))
    parser.add_argument("--size", type=int, default=64, help="target side in pixels (default 64)")
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=2, help="prompts per epoch")
    parser.add_argument("--num-steps", type=int, default=4, help="sampling steps")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is warm-up)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating fused/eager rounds")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="2 epochs, 1 round, 32² (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.repeats, args.size = 2, 1, 32

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ckpt = rewardkit.make_tiny_checkpoint(args.backbone, root / "ckpt")
        data = write_omniref_mini(root / "data", n_train=8, n_test=1, size=64)["train"]
        epoch_rates: dict[str, list[float]] = {"fused": [], "eager": []}
        update_rates: dict[str, list[float]] = {"fused": [], "eager": []}
        for round_ in range(args.repeats):
            for name, backend in (("fused", "auto"), ("eager", "eager")):
                started = time.perf_counter()
                result = train(config(args, ckpt, data, root / f"{name}{round_}", backend))
                total = args.prompts * args.group_size
                for record in result.history[1:]:
                    epoch_rates[name].append(total / record["time/epoch"])
                    update = record["time/epoch"] - record["time/rollout"]
                    update_rates[name].append(total / update)
                print(f"round {round_} {name}: {time.perf_counter() - started:.1f}s")

    print(
        f"\nGRPO epoch on tiny {args.backbone} ({args.device}), {args.size}² targets, "
        f"{args.prompts}×{args.group_size} samples, {args.num_steps} steps, 3 trained steps"
    )
    print(f"{'log-prob':<10}{'epoch samples/s':>18}{'update samples/s':>20}")
    for name in ("fused", "eager"):
        print(
            f"{name:<10}{statistics.median(epoch_rates[name]):>18.2f}{statistics.median(update_rates[name]):>20.2f}"
        )
    ratio = statistics.median(epoch_rates["fused"]) / statistics.median(epoch_rates["eager"])
    ratio_update = statistics.median(update_rates["fused"]) / statistics.median(update_rates["eager"])
    print(f"fused / eager: epoch ×{ratio:.2f}, update ×{ratio_update:.2f}")


if __name__ == "__main__":
    main()
