"""The memory planner against a measured training micro-step of a whole real-size transformer.

Builds the transformer of a backbone variant from its shipped config with random weights
(``build_plan_model(..., device=...)``, in ``--dtype``), attaches rank-``--lora-rank`` LoRA
(float32 master weights, the forward under autocast in ``--dtype`` as in the recipes), and for
gradient checkpointing off and on measures

* the peak memory of one LoRA training micro-step (forward, backward, AdamW step; the allocator's
  peak on CUDA, the profiler's allocation events on CPU) plus what was resident before it
  (frozen base, LoRA weights, AdamW state), beside ``rewardkit plan``'s estimate for the same
  shape on one process, and their ratio;
* the same for one sampling forward (no gradients, the rollout's transformer call) beside the
  plan's DDP rollout row;
* samples/s of a sampling forward and of the training micro-step, each over ``--repeats`` runs
  after a warm-up;
* one GRPO group in miniature, with the fused and with the eager SDE log-prob: ``--group-size``
  samples rolled out over ``--num-steps`` Flow-SDE steps (``sde_step``), then the update of one
  trained step, one sample per forward (``sde_log_prob`` with gradients, ``clipped_policy_loss``,
  AdamW): rollout and update samples/s and the update's peak memory per backend.

On a lent GPU (sized to stay under 5 minutes on one H100)::

    python benchmarks/bench_plan_vs_measured.py --device cuda --backbone flux2-klein --variant klein-4b
    python benchmarks/bench_plan_vs_measured.py --device cuda --backbone qwen-image-edit-2511 \
        --checkpointing on

On CPU the tiny variant runs in seconds (the same code path)::

    python benchmarks/bench_plan_vs_measured.py --variant tiny --dtype float32 --resolution 128

The recipe's whole GRPO epoch, fused vs eager, on the tiny backbones is ``bench_grpo.py``.
"""

import argparse
import contextlib
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._pytree import tree_leaves

from rewardkit.core.loss import clipped_policy_loss
from rewardkit.core.sde import sde_log_prob, sde_step
from rewardkit.planning.activations import attach_lora
from rewardkit.planning.measure import lora_training_step, peak_bytes
from rewardkit.planning.model import PlanModel, PlanShape, count_parameters
from rewardkit.planning.planner import DTYPES, PlanReport, build_plan_model, plan_memory

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


@dataclass
class Setup:
    """The model built once for every measurement: random base weights, LoRA, autocast."""

    model: PlanModel
    n_base: int
    n_lora: int
    device: torch.device
    dtype: torch.dtype
    report: PlanReport

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The recipes' autocast in the compute dtype (none in float32)."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def optimizer(self, checkpointing: bool) -> torch.optim.AdamW:
        """A fresh AdamW on the LoRA weights, with gradient checkpointing switched as asked."""
        transformer = self.model.transformer
        if checkpointing:
            transformer.enable_gradient_checkpointing()
        else:
            transformer.disable_gradient_checkpointing()
        return torch.optim.AdamW([p for p in transformer.parameters() if p.requires_grad], lr=1e-5)


def build(args: argparse.Namespace) -> Setup:
    """Plan once, then build the transformer once with random weights and attach LoRA."""
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    report = plan_memory(
        args.backbone, variant=args.variant, resolution=args.resolution, references=args.references,
        lora_rank=args.lora_rank, processes=1, dtype=args.dtype, text_encoder_on_gpu=False,
    )  # fmt: skip
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
    return Setup(model, n_base, n_lora, device, dtype, report)


def measure(args: argparse.Namespace, setup: Setup, checkpointing: bool) -> dict[str, Any]:
    """Planned vs measured bytes and throughput for one checkpointing setting."""
    model, device, dtype = setup.model, setup.device, setup.dtype
    row = next(r for r in setup.report.rows if r.strategy == "DDP" and r.checkpointing == checkpointing)
    planned = row.estimate.total(args.batch) - row.estimate.frozen_components  # VAE not built here
    optimizer = setup.optimizer(checkpointing)
    shape = PlanShape(args.batch, args.resolution, args.resolution, args.references, args.resolution,
                      setup.report.shape.text_tokens)  # fmt: skip
    inputs = model.forward_kwargs(shape, device, dtype)
    autocast = setup.autocast()

    def train() -> None:
        with autocast:
            lora_training_step(model.transformer, inputs, optimizer)

    @torch.no_grad()
    def sample() -> None:
        with autocast:
            model.transformer(**inputs)

    train()  # AdamW's state exists from here on, as in a run
    step_peak = peak_bytes(train, device)
    resident = setup.n_base * torch.empty((), dtype=dtype).element_size() + 12 * setup.n_lora
    measured = resident + step_peak
    rollout = next(r for r in setup.report.rollout_rows if r.strategy == "DDP").estimate
    sample_planned = rollout.total(args.batch) - rollout.frozen_components
    leaves = tree_leaves(dict(inputs))
    input_bytes = sum(t.untyped_storage().nbytes() for t in leaves if isinstance(t, torch.Tensor))
    sample_measured = resident + input_bytes + peak_bytes(sample, device)
    result = {
        "backbone": args.backbone, "variant": model.variant, "device": str(device), "dtype": args.dtype,
        "resolution": args.resolution, "references": args.references, "micro_batch": args.batch,
        "checkpointing": checkpointing, "planned_gib": planned / GIB, "measured_gib": measured / GIB,
        "planned_over_measured": planned / measured,
        "sample_planned_gib": sample_planned / GIB, "sample_measured_gib": sample_measured / GIB,
        "sample_planned_over_measured": sample_planned / sample_measured,
        "train_samples_per_s": args.batch / _timed(train, args.repeats, device),
        "sample_forwards_per_s": args.batch / _timed(sample, args.repeats, device),
    }  # fmt: skip
    return result


def _rows(value: Any, rows: slice, batch: int) -> Any:
    """The ``rows`` of a per-sample forward input (a batched tensor, or a per-sample list such as
    Qwen's ``img_shapes``); anything else as it is."""
    if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == batch:
        return value[rows]
    if isinstance(value, list) and len(value) == batch:
        return value[rows]
    return value


def _update(
    velocity: Callable[[torch.Tensor, slice], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    stored: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    sigmas: tuple[float, float, float],
    backend: str,
) -> None:
    """The update of one trained step: one sample per forward, then one AdamW step."""
    x_t, x_next, old, advantages = stored
    sigma, sigma_next, sigma_max = sigmas
    g = x_t.shape[0]
    for b in range(g):
        rows = slice(b, b + 1)
        v = velocity(x_t[rows], rows)
        log_prob = sde_log_prob(x_next[rows], x_t[rows], v, sigma, sigma_next, noise_level=0.7,
                                sigma_max=sigma_max, backend=backend)  # type: ignore[arg-type]  # fmt: skip
        loss, _ = clipped_policy_loss(log_prob, old[rows], advantages[rows])
        (loss / g).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def grpo_group(args: argparse.Namespace, setup: Setup) -> list[dict[str, Any]]:
    """One GRPO group (rollout, then the update of one trained step) per log-prob backend."""
    model, device, dtype = setup.model, setup.device, setup.dtype
    optimizer = setup.optimizer(args.checkpointing == "on")
    g, side = args.group_size, args.resolution
    tokens = (side // model.multiple_of) ** 2
    text = model.default_text_tokens(args.references)
    group = model.forward_kwargs(PlanShape(g, side, side, args.references, side, text), device, dtype)
    autocast = setup.autocast()
    sigmas = torch.linspace(1.0, 0.0, args.num_steps + 1).tolist()
    trained = args.num_steps // 2

    def velocity(x: torch.Tensor, rows: slice) -> torch.Tensor:
        inputs = {k: _rows(v, rows, g) for k, v in group.items()}
        references = inputs["hidden_states"][:, tokens:]
        inputs["hidden_states"] = torch.cat([x.to(dtype), references], dim=1)
        with autocast:
            return model.transformer(**inputs)[0][:, :tokens].float()

    results = []
    for backend in ("auto", "eager"):  # auto: Triton on CUDA, the chunked kernel on CPU
        gen = torch.Generator(device).manual_seed(1)
        channels = group["hidden_states"].shape[-1]
        x = torch.randn(g, tokens, channels, device=device, generator=gen)
        with torch.no_grad():  # warm-up: kernels compiled and caches filled before the clock starts
            sde_step(x, velocity(x, slice(None)), sigmas[0], sigmas[1], noise_level=0.7, generator=gen,
                     sigma_max=sigmas[1], backend=backend)  # fmt: skip
        started = time.perf_counter()
        with torch.no_grad():
            for i in range(args.num_steps):
                step = sde_step(x, velocity(x, slice(None)), sigmas[i], sigmas[i + 1], noise_level=0.7,
                                generator=gen, sigma_max=sigmas[1], backend=backend)  # fmt: skip
                if i == trained:
                    x_t, x_next, old = x, step.next, step.log_prob
                x = step.next
        if device.type == "cuda":
            torch.cuda.synchronize()
        rollout_s = time.perf_counter() - started
        advantages = torch.linspace(-1.0, 1.0, g, device=device)
        update = functools.partial(_update, velocity, optimizer, (x_t, x_next, old, advantages),
                                   (sigmas[trained], sigmas[trained + 1], sigmas[1]), backend)  # fmt: skip
        update_s = _timed(update, 1, device)  # the warm-up call also creates AdamW's state
        peak = peak_bytes(update, device)
        results.append({
            "grpo_backend": "fused" if backend == "auto" else "eager", "group_size": g,
            "num_steps": args.num_steps, "rollout_samples_per_s": g / rollout_s,
            "update_samples_per_s": g / update_s, "update_peak_above_resident_gib": peak / GIB,
        })  # fmt: skip
    return results


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
    parser.add_argument("--group-size", type=int, default=4, help="GRPO group: samples rolled out together")
    parser.add_argument("--num-steps", type=int, default=10, help="GRPO rollout steps")
    parser.add_argument("--json", action="store_true", help="print one JSON line per setting")
    args = parser.parse_args()
    settings = {"off": (False,), "on": (True,), "both": (False, True)}[args.checkpointing]
    setup = build(args)
    for checkpointing in settings:
        r = measure(args, setup, checkpointing)
        if args.json:
            print(json.dumps(r), flush=True)
            continue
        setting = f"{r['backbone']} {r['variant']} {r['device']} {r['dtype']} {r['resolution']}px"
        setting += f" refs={r['references']} m={r['micro_batch']} ckpt={'on ' if checkpointing else 'off'}"
        print(
            f"{setting}: planned {r['planned_gib']:.3f} GiB, measured {r['measured_gib']:.3f} GiB "
            f"(planned/measured {r['planned_over_measured']:.3f}); train {r['train_samples_per_s']:.2f} "
            f"samples/s, sampling forward {r['sample_forwards_per_s']:.2f}/s; sampling forward planned "
            f"{r['sample_planned_gib']:.3f} GiB, measured {r['sample_measured_gib']:.3f} GiB "
            f"(planned/measured {r['sample_planned_over_measured']:.3f})",
            flush=True,
        )

    grpo = grpo_group(args, setup)
    for r in grpo:
        if args.json:
            print(json.dumps(r), flush=True)
            continue
        print(
            f"GRPO group of {r['group_size']}, {r['num_steps']} steps, {r['grpo_backend']} log-prob: rollout "
            f"{r['rollout_samples_per_s']:.2f} samples/s, update {r['update_samples_per_s']:.2f} samples/s, "
            f"update peak {r['update_peak_above_resident_gib']:.3f} GiB above the resident weights",
            flush=True,
        )

    fused, eager = grpo
    print(
        f"fused / eager: rollout ×{fused['rollout_samples_per_s'] / eager['rollout_samples_per_s']:.2f}, "
        f"update ×{fused['update_samples_per_s'] / eager['update_samples_per_s']:.2f}, update peak "
        f"×{fused['update_peak_above_resident_gib'] / eager['update_peak_above_resident_gib']:.2f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
