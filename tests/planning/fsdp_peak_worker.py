"""One process of the FSDP memory check (``test_measure.py`` starts two with torchrun's variables).

Shards the tiny transformer as the recipes do (frozen base over the processes, LoRA whole),
measures one training micro-step (forward, backward, the LoRA gradients' all-reduce, AdamW step)
and writes the measured and planned per-process bytes as JSON.
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from rewardkit.planning.activations import attach_lora
from rewardkit.planning.measure import peak_bytes
from rewardkit.planning.planner import build_plan_model, plan_memory
from rewardkit.recipes import _common as rc
from rewardkit.training.fsdp import FSDPSettings, shard_denoiser


def main(name: str, resolution: int, references: int, checkpointing: bool, out: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    report = plan_memory(name, variant="tiny", resolution=resolution, references=references, lora_rank=4,
                         processes=world, dtype="float32", text_encoder_on_gpu=False)  # fmt: skip
    row = next(r for r in report.rows if r.strategy == "FSDP" and r.checkpointing == checkpointing)

    torch.manual_seed(0)
    model = build_plan_model(name, "tiny", device="cpu")
    attach_lora(model.transformer, rank=4, target_modules=model.lora_target_modules, dtype=torch.float32)
    if checkpointing:
        model.transformer.enable_gradient_checkpointing()
    lora = [p for p in model.transformer.parameters() if p.requires_grad]
    shard_denoiser(model.transformer, FSDPSettings(), ignored=lora, device=torch.device("cpu"))
    optimizer = torch.optim.AdamW(lora, lr=1e-4)
    process = rc.Dist(None, rank, world, torch.device("cpu"), FSDPSettings())
    inputs = model.forward_kwargs(report.shape, torch.device("cpu"), torch.float32)

    def step() -> None:
        out = model.transformer(**inputs)[0]
        loss = out.float().square().mean()
        del out
        loss.backward()
        del loss
        rc.all_reduce_grads(process, lora)  # the recipes' LoRA gradient average
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # AdamW's state exists from here on
    step_peak = peak_bytes(step)
    shards = sum(p.to_local().numel() * p.element_size() for p in model.transformer.parameters()
                 if not p.requires_grad)  # fmt: skip
    resident = shards + 12 * sum(p.numel() for p in lora)  # LoRA weights and AdamW's m, v
    est = row.estimate
    record = {
        "measured": resident + step_peak,
        "planned": est.total(1) - est.frozen_components,
        "weights_measured": shards,
        "weights_planned": est.weights,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "on", Path(sys.argv[5]))
