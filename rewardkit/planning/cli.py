"""``rewardkit plan``: per-GPU memory of LoRA training of a real backbone, from its config alone.

The transformer is built on PyTorch's ``meta`` device from the published config the backbone
package ships (no weights are downloaded or allocated), the LoRA adapter is attached, and one
forward measures what autograd saves for backward. See docs/planning.md for the memory model.
"""

import argparse
import json
import math
import sys
from dataclasses import asdict
from typing import Any

from rewardkit.planning.memory import GIB
from rewardkit.planning.planner import DTYPES, PlanReport, plan_memory

__all__ = ["configure", "format_report", "report_dict", "run"]

_EPILOG = """\
variants: qwen-image-edit-2511: 2511 (default), tiny; flux2-klein: klein-4b (default), klein-9b, tiny.

Per GPU, for one micro-step (forward, backward, AdamW step) at micro-batch m:
  total(m) = weights + FSDP all-gather (2 blocks) + text encoder/VAE + LoRA state
             + m x (activations + transient)
LoRA state = 16 B/param (float32 weight, grad, AdamW m and v) + 4 B/param all-reduce buffer when P > 1;
it is replicated under FSDP too (only the frozen base is sharded). Activations are measured on the
meta device with flash attention's saved set; 'ckpt' rows checkpoint every block.

Rollout rows: one sampling forward (no gradients) at micro-batch m (rollout.micro_batch):
  total(m) = weights + FSDP all-gather + text encoder/VAE + resident LoRA state (12 B/param:
             weight, AdamW m and v) + m x (peak alive during the forward)
"""


def _positive_int(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {text!r}")
    return value


def _int_arg(name: str, *, minimum: int = 1) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= {minimum}, got {text!r}")
        return value

    return parse


def _gib(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"--gpu-memory must be a positive number of GiB, got {text!r}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``rewardkit plan`` arguments to ``parser``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (__doc__ or "").replace("``", "")  # the module docstring, as plain text
    parser.epilog = _EPILOG
    parser.add_argument(
        "--backbone",
        required=True,
        help="registry name of the backbone, as in the recipes (qwen-image-edit-2511, flux2-klein)",
    )
    parser.add_argument(
        "--variant", default=None, help="backbone variant (see below; default: the real model)"
    )
    parser.add_argument("--resolution", type=_int_arg("--resolution"), default=1024, help="target side, px")
    parser.add_argument(
        "--references", type=_int_arg("--references", minimum=0), default=3, help="per sample"
    )
    parser.add_argument(
        "--reference-size",
        type=_int_arg("--reference-size"),
        default=None,
        help="reference side, px (default: resolution)",
    )
    parser.add_argument(
        "--text-tokens",
        type=_int_arg("--text-tokens"),
        default=None,
        help="prompt tokens (default: the backbone's typical)",
    )
    parser.add_argument(
        "--group-size",
        type=_int_arg("--group-size"),
        default=None,
        help="GRPO group size: report micro-steps per group",
    )
    parser.add_argument(
        "--lora-rank", type=_int_arg("--lora-rank"), default=64, help="LoRA rank (default 64)"
    )
    parser.add_argument("--processes", type=_int_arg("--processes"), default=8, help="GPUs / processes P")
    parser.add_argument("--gpu-memory", type=_gib, default=80.0, help="memory per GPU in GiB (default 80)")
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default="bfloat16", help="weight and compute dtype"
    )
    parser.add_argument(
        "--text-encoder-on",
        choices=("gpu", "cpu"),
        default="gpu",
        help="where the text encoder's weights live",
    )
    parser.add_argument("--ema", action="store_true", help="count an EMA copy of the LoRA weights")
    parser.add_argument("--kl-reference", action="store_true", help="count a KL-reference copy of the LoRA")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")


def report_dict(report: PlanReport) -> dict[str, Any]:
    """The report as JSON-ready data (bytes as ints; each row with its total at micro-batch 1)."""
    data = asdict(report)
    data["activations"]["checkpointed"] = report.activations.checkpointed
    for key in ("rows", "rollout_rows"):
        for row, out in zip(getattr(report, key), data[key], strict=True):
            out["total_at_1"] = row.estimate.total(1)
    return data


def _gb(n: int) -> str:
    return f"{n / GIB:7.2f}"


def format_report(report: PlanReport) -> str:
    """The human-readable table of ``report``."""
    s = report.shape
    lines = [
        f"{report.backbone} ({report.variant}), {report.dtype}: target {s.height}x{s.width}, "
        f"{s.references} reference(s) of {s.reference_size}x{s.reference_size}, {s.text_tokens} text tokens",
        f"{report.processes} process(es) x {report.gpu_memory / GIB:g} GiB; text encoder on "
        f"{'GPU' if report.text_encoder_on_gpu else 'CPU'}",
        "",
        "parameters",
        f"  transformer   {report.transformer_params:>16,}   (largest block {report.largest_block_params:,})",
        f"  text encoder  {report.text_encoder_params:>16,}",
        f"  VAE           {report.vae_params:>16,}",
        f"  LoRA r={report.lora_rank:<5} {report.lora_params:>16,}",
        "",
        "per GPU (GiB)      weights  gather  TE+VAE  LoRA+opt  act/sample  transient  total@1"
        "  max micro-batch",
    ]
    for row in report.rows:
        e = row.estimate
        label = f"{row.strategy:<4} ckpt {'on ' if row.checkpointing else 'off'}"
        steps = "" if row.accumulation_steps is None else f"  ({row.accumulation_steps} micro-steps/group)"
        lines.append(
            f"{label:<17} {_gb(e.weights)} {_gb(e.fsdp_gather)} {_gb(e.frozen_components)}   "
            f"{_gb(e.lora)}     {_gb(e.activations_per_sample)}    {_gb(e.transient_per_sample)}  "
            f"{_gb(e.total(1))}  {row.max_micro_batch:>15}{steps}"
        )
    lines += [
        "",
        "rollout (GiB)      weights  gather  TE+VAE  LoRA+opt  peak/sample             total@1"
        "  max micro-batch",
    ]
    for row in report.rollout_rows:
        e = row.estimate
        calls = row.accumulation_steps
        steps = "" if calls is None else f"  ({calls} forward{'s' * (calls > 1)}/sampling step/group)"
        lines.append(
            f"{row.strategy + ' no grad':<17} {_gb(e.weights)} {_gb(e.fsdp_gather)} "
            f"{_gb(e.frozen_components)}   {_gb(e.lora)}     {_gb(e.activations_per_sample)}"
            f"             {_gb(e.total(1))}  {row.max_micro_batch:>15}{steps}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the planner for the parsed ``args``; print the table (or JSON). Returns the exit status."""
    try:
        report = plan_memory(
            args.backbone,
            variant=args.variant,
            resolution=args.resolution,
            references=args.references,
            reference_size=args.reference_size,
            text_tokens=args.text_tokens,
            lora_rank=args.lora_rank,
            processes=args.processes,
            gpu_memory_gib=args.gpu_memory,
            dtype=args.dtype,
            text_encoder_on_gpu=args.text_encoder_on == "gpu",
            group_size=args.group_size,
            ema=args.ema,
            kl_reference=args.kl_reference,
        )
    except ValueError as err:
        message = str(err)
        for option in ("variant", "resolution", "reference_size"):
            if message.startswith(option):
                message = f"--{option.replace('_', '-')}: {message}"
        if message.startswith(("unknown backbone", "backbone")):
            message = f"--backbone: {message}"
        print(f"rewardkit plan: error: {message}", file=sys.stderr)
        return 2
    print(json.dumps(report_dict(report), indent=2) if args.json else format_report(report))
    return 0
