"""Benchmark the backbone adapters: rollout throughput and training-forward cost.

Default mode (CPU, tiny offline checkpoints written by ``rewardkit.make_tiny_checkpoint``):

* **rollout**: samples/s of ``rewardkit.backbone.rollout`` for one group of G samples, N steps,
  an SDE window of 2 steps, decoding included; the condition encoding (text encoder + VAE of
  the references, done once per group) is timed separately.
* **training forward**: seconds per sample of ``step_log_prob`` + backward on a stored trained
  step with a LoRA adapter (gradient checkpointing off and on), and of the no-grad reference
  (adapter off) forward used by the KL term.
* **flow matching**: the SFT / pre-training loss at ``--noise-draws`` noise levels of one
  condition as one batched forward (per-sample σ) against one forward per level, as a ratio of
  times measured in the same run.

``--block`` mode builds *one real-size transformer block* of each backbone with random weights
(no download) and times LoRA forward + backward at 512² with reference tokens; meant for a GPU
(``--device cuda --dtype bfloat16``), where it also reports peak memory. The FLUX.2 [klein] 9B
dimensions are best-known values; override them with ``--flux2-heads`` etc. if the checkpoint
config says otherwise.

    python benchmarks/bench_backbones.py                  # tiny configs, CPU
    python benchmarks/bench_backbones.py --quick          # fewer repeats, smaller group
    python benchmarks/bench_backbones.py --block --device cuda --dtype bfloat16
"""

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import rewardkit
from rewardkit.backbone import rollout, step_log_prob
from rewardkit.core.flow_matching import flow_matching_loss, noisy_latents

BACKBONES = ("qwen-image-edit-2511", "flux2-klein")


def rgb(height: int, width: int, seed: int) -> Any:
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def timed(fn: Callable[[], object], repeats: int, *, sync: Callable[[], None] = lambda: None) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_tiny(name: str, root: Path, args: argparse.Namespace) -> None:
    path = rewardkit.make_tiny_checkpoint(name, root / name)
    autocast = None if args.autocast == "none" else args.autocast
    bb: Any = rewardkit.load_backbone(name, path, device="cpu", autocast_dtype=autocast)
    refs = [rgb(64 + 8 * (j % 2), 64, seed=j) for j in range(args.refs)]
    g, n = args.group_size, args.num_steps
    (cond,) = bb.encode_condition(["put the references together"], [refs], height=args.size, width=args.size)
    t_encode = timed(
        lambda: bb.encode_condition(["x"], [refs], height=args.size, width=args.size), args.repeats
    )

    def run() -> Any:
        gen = torch.Generator().manual_seed(0)
        return rollout(bb, cond, group_size=g, num_steps=n, generator=gen, sde_steps=[1, 2])

    t_rollout = timed(run, args.repeats)
    bb.add_adapter(rank=8)
    traj = run().trajectory

    def train() -> None:
        for p in bb.adapter_parameters():
            p.grad = None
        step_log_prob(bb, traj, 1).log_prob.sum().backward()

    t_train = timed(train, args.repeats)
    bb.set_gradient_checkpointing(True)
    t_train_ckpt = timed(train, args.repeats)
    bb.set_gradient_checkpointing(False)

    def reference() -> None:
        with torch.no_grad():
            step_log_prob(bb, traj, 1, adapter=False)

    t_ref = timed(reference, args.repeats)
    # SFT / pre-training: k noise levels of one condition, one forward each vs one batched forward.
    k = args.noise_draws
    x0 = bb.initial_latents(1, args.size, args.size, generator=torch.Generator().manual_seed(1))
    noise = bb.initial_latents(k, args.size, args.size, generator=torch.Generator().manual_seed(2))
    sigma = torch.linspace(0.9, 0.1, k)

    def flow_matching(batched: bool) -> None:
        for p in bb.adapter_parameters():
            p.grad = None
        parts = [slice(0, k)] if batched else [slice(i, i + 1) for i in range(k)]
        for part in parts:
            eps, clean = noise[part], x0.expand_as(noise[part])
            v = bb.velocity(noisy_latents(clean, eps, sigma[part]), sigma[part], cond)
            flow_matching_loss(v, clean, eps).backward()

    t_looped = timed(lambda: flow_matching(False), args.repeats)
    t_batched = timed(lambda: flow_matching(True), args.repeats)
    tokens = f"{cond.image_seq_len}+{cond.reference_latents.shape[1]} img tok"
    print(
        f"{name:22s} {args.refs} refs, {tokens:>16s} | encode {t_encode * 1e3:7.1f} ms/group | "
        f"rollout {g / t_rollout:6.2f} samples/s ({n} steps) | "
        f"train fwd+bwd {t_train / g * 1e3:6.1f} ms/sample (ckpt {t_train_ckpt / g * 1e3:6.1f}) | "
        f"ref fwd {t_ref / g * 1e3:5.1f} ms/sample | "
        f"flow matching ×{k} noise levels: batched / looped time {t_batched / t_looped:.2f}"
    )


def bench_block(args: argparse.Namespace) -> None:
    """One real-size block per backbone, random weights, LoRA forward + backward."""
    from diffusers import Flux2Transformer2DModel, QwenImageTransformer2DModel
    from peft import LoraConfig

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    grid = args.block_size // 16  # latent patches per side (VAE /8, 2×2 patch)
    n_img = grid * grid * (1 + args.refs)
    targets = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]

    def run(name: str, model: Any, inputs: dict[str, Any]) -> None:
        model.requires_grad_(False)
        model.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, target_modules=targets))
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.data = p.data.float()
                p.requires_grad_(True)

        def step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype != torch.float32):
                out = model(**inputs, return_dict=False)[0]
            out[:, : grid * grid].float().square().mean().backward()

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = timed(step, args.repeats, sync=sync)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        mem = f" | peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device.type == "cuda" else ""
        print(
            f"{name:34s} {params:7.1f} M params, {n_img} img + {args.text_len} txt tok | "
            f"fwd+bwd {t * 1e3:8.1f} ms{mem}"
        )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        qwen = QwenImageTransformer2DModel(num_layers=1, zero_cond_t=True).to(device, dtype)
    shapes = [[(1, grid, grid)] * (1 + args.refs)]
    run(
        "qwen-image-edit-2511 (1 of 60 blocks)",
        qwen,
        {
            "hidden_states": torch.randn(1, n_img, 64, device=device, dtype=dtype),
            "encoder_hidden_states": torch.randn(1, args.text_len, 3584, device=device, dtype=dtype),
            "timestep": torch.full((1,), 0.7, device=device, dtype=dtype),
            "img_shapes": shapes,
        },
    )
    del qwen
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        flux = Flux2Transformer2DModel(
            num_layers=1,
            num_single_layers=1,
            num_attention_heads=args.flux2_heads,
            joint_attention_dim=args.flux2_text_dim,
            guidance_embeds=False,
        ).to(device, dtype)
    ids = [
        torch.cartesian_prod(
            torch.tensor([10 * i]), torch.arange(grid), torch.arange(grid), torch.tensor([0])
        )
        for i in range(1 + args.refs)
    ]
    run(
        "flux2-klein (1 double + 1 single)",
        flux,
        {
            "hidden_states": torch.randn(1, n_img, 128, device=device, dtype=dtype),
            "encoder_hidden_states": torch.randn(
                1, args.text_len, args.flux2_text_dim, device=device, dtype=dtype
            ),
            "timestep": torch.full((1,), 0.7, device=device, dtype=dtype),
            "img_ids": torch.cat(ids).to(device),
            "txt_ids": torch.cartesian_prod(
                torch.zeros(1, dtype=torch.long),
                torch.zeros(1, dtype=torch.long),
                torch.zeros(1, dtype=torch.long),
                torch.arange(args.text_len),
            ).to(device),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a smaller group")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    parser.add_argument("--group-size", type=int, default=8, help="G samples per rollout (tiny mode)")
    parser.add_argument("--num-steps", type=int, default=6, help="N sampling steps (tiny mode)")
    parser.add_argument("--refs", type=int, default=2, help="reference images per condition")
    parser.add_argument("--size", type=int, default=64, help="target side in pixels (tiny mode)")
    parser.add_argument(
        "--autocast", default=None, choices=[None, "bfloat16"], help="autocast dtype (tiny mode)"
    )
    parser.add_argument(
        "--noise-draws", type=int, default=4, help="noise levels per condition in the flow-matching timing"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--block", action="store_true", help="time one real-size block per backbone instead")
    parser.add_argument("--device", default="cpu", help="device for --block")
    parser.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16"], help="weights dtype for --block"
    )
    parser.add_argument("--block-size", type=int, default=512, help="target side in pixels for --block")
    parser.add_argument("--text-len", type=int, default=256, help="text tokens for --block")
    parser.add_argument("--rank", type=int, default=64, help="LoRA rank for --block")
    parser.add_argument("--flux2-heads", type=int, default=32, help="FLUX.2 klein 9B: 32 heads × 128 = 4096")
    parser.add_argument(
        "--flux2-text-dim", type=int, default=12288, help="FLUX.2 klein 9B: 3 × Qwen3-8B hidden"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.repeats, args.group_size, args.num_steps = 2, 4, 4
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.block:
        bench_block(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backbones:
            bench_tiny(name, Path(tmp), args)


if __name__ == "__main__":
    main()
