"""The memory planner against a measured training micro-step of a whole real-size transformer.

Builds the transformer of a backbone variant from its shipped config with random weights
(``build_plan_model(..., device=...)``, in ``--dtype``), attaches rank-``--lora-rank`` LoRA
(float32 master weights, the forward under autocast in ``--dtype`` as in the recipes), and for
gradient checkpointing off and on measures

* the peak memory of one LoRA training micro-step (forward, backward, AdamW step; the allocator's
  peak on CUDA, the profiler's allocation events on CPU) plus what was resident before it
  (frozen base, LoRA weights, AdamW state), beside ``rewardkit plan``'s estimate for the same
  shape on one process, and their ratio;
* samples/s of a sampling forward (no gradients, the rollout's transformer call) and of the
  training micro-step, each over ``--repeats`` runs after a warm-up.

On a lent GPU (sized to stay under 5 minutes on one H100)::

    python benchmarks/bench_plan_vs_measured.py --device cuda --backbone flux2-klein --variant klein-4b
    python benchmarks/bench_plan_vs_measured.py --device cuda --backbone qwen-image-edit-2511 \
        --checkpointing on

On CPU the tiny variant runs in seconds (the same code path)::

    python benchmarks/bench_plan_vs_measured.py --variant tiny --dtype float32 --resolution 128

The fused vs eager log-prob of a GRPO epoch is ``bench_grpo.py``'s (``gpu_check.sh`` runs both).
"""

import argparse
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import torch

from rewardkit.planning.activations import attach_lora
from rewardkit.planning.measure import lora_training_step, peak_bytes
from rewardkit.planning.model import PlanShape, count_parameters
from rewardkit.planning.planner import DTYPES, build_plan_model, plan_memory

GIB = 1024**3


def _timed(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` (after one warm-up call)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def measure(args: argparse.Namespace, checkpointing: bool) -> dict[str, Any]:
    """Planned vs measured bytes and throughput for one checkpointing setting."""
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    report = plan_memory(
        args.backbone, variant=args.variant, resolution=args.resolution, references=args.references,
        lora_rank=args.lora_rank, processes=1, dtype=args.dtype, text_encoder_on_gpu=False,
    )  # fmt: skip
    row = next(r for r in report.rows if r.strategy == "DDP" and r.checkpointing == checkpointing)
    planned = row.estimate.total(args.batch) - row.estimate.frozen_components  # VAE not built here

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # random base weights created directly in the compute dtype
    try:
        torch.manual_seed(0)
        model = build_plan_model(args.backbone, args.variant, device=str(device))
    finally:
        torch.set_default_dtype(previous)
    n_base = count_parameters(model.transformer)
    n_lora = attach_lora(model.transformer, rank=args.lora_rank, target_modules=model.lora_target_modules,
                         dtype=torch.float32)  # fmt: skip
    if checkpointing:
        model.transformer.enable_gradient_checkpointing()
    params = [p for p in model.transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    shape = PlanShape(args.batch, args.resolution, args.resolution, args.references, args.resolution,
                      report.shape.text_tokens)  # fmt: skip
    inputs = model.forward_kwargs(shape, device, dtype)
    autocast = (
        torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    )

    def train() -> None:
        with autocast:
            lora_training_step(model.transformer, inputs, optimizer)

    @torch.no_grad()
    def sample() -> None:
        with autocast:
            model.transformer(**inputs)

    train()  # AdamW's state exists from here on, as in a run
    step_peak = peak_bytes(train, device)
    resident = n_base * torch.empty((), dtype=dtype).element_size() + 12 * n_lora
    measured = resident + step_peak
    result = {
        "backbone": args.backbone, "variant": model.variant, "device": str(device), "dtype": args.dtype,
        "resolution": args.resolution, "references": args.references, "micro_batch": args.batch,
        "checkpointing": checkpointing, "planned_gib": planned / GIB, "measured_gib": measured / GIB,
        "planned_over_measured": planned / measured,
        "train_samples_per_s": args.batch / _timed(train, args.repeats, device),
        "sample_forwards_per_s": args.batch / _timed(sample, args.repeats, device),
    }  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="flux2-klein", help="registry name (default flux2-klein)")
    parser.add_argument("--variant", help="klein-4b, klein-9b, 2511 or tiny (default: the backbone's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES), help="weights and autocast")
    parser.add_argument("--resolution", type=int, default=512, help="square target and reference side")
    parser.add_argument("--references", type=int, default=2, help="references per sample")
    parser.add_argument("--batch", type=int, default=1, help="micro-batch")
    parser.add_argument("--lora-rank", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up")
    parser.add_argument(
        "--checkpointing",
        choices=["off", "on", "both"],
        default="both",
        help="gradient checkpointing settings to measure (Qwen at 512 px fits an H100 only with 'on')",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line per setting")
    args = parser.parse_args()
    settings = {"off": (False,), "on": (True,), "both": (False, True)}[args.checkpointing]
    for checkpointing in settings:
        r = measure(args, checkpointing)  # the model is freed on return
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if args.json:
            print(json.dumps(r), flush=True)
            continue
        setting = f"{r['backbone']} {r['variant']} {r['device']} {r['dtype']} {r['resolution']}px"
        setting += f" refs={r['references']} m={r['micro_batch']} ckpt={'on ' if checkpointing else 'off'}"
        print(
            f"{setting}: planned {r['planned_gib']:.3f} GiB, measured {r['measured_gib']:.3f} GiB "
            f"(planned/measured {r['planned_over_measured']:.3f}); train {r['train_samples_per_s']:.2f} "
            f"samples/s, sampling forward {r['sample_forwards_per_s']:.2f}/s",
            flush=True,
        )


if __name__ == "__main__":
    main()
