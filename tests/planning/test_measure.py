"""The planner against the measured peak of a real CPU training micro-step (tiny configs)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rewardkit.planning.activations import attach_lora
from rewardkit.planning.measure import lora_training_step, peak_bytes
from rewardkit.planning.model import count_parameters
from rewardkit.planning.planner import build_plan_model, plan_memory
from tests.recipes.conftest import REPO, cli_env, free_port

pytest.importorskip("diffusers")


def test_peak_bytes_sees_a_temporary_allocation() -> None:
    def work() -> None:
        a = torch.ones(250_000)  # 1 MB, freed at return
        b = torch.ones(125_000)
        del a, b

    peak = peak_bytes(work)
    assert 1_500_000 <= peak < 1_600_000
    assert peak_bytes(lambda: None) == 0
    with pytest.raises(ValueError, match="device"):
        peak_bytes(lambda: None, "meta")


@pytest.mark.parametrize("checkpointing", [False, True], ids=["ckpt-off", "ckpt-on"])
@pytest.mark.parametrize("name", ["qwen-image-edit-2511", "flux2-klein"])
def test_plan_within_20_percent_of_measured_step(name: str, checkpointing: bool) -> None:
    rank = 4
    report = plan_memory(
        name, variant="tiny", resolution=128, references=2, lora_rank=rank, processes=1, dtype="float32",
        text_encoder_on_gpu=False,
    )  # fmt: skip
    row = next(r for r in report.rows if r.strategy == "DDP" and r.checkpointing == checkpointing)
    est = row.estimate

    torch.manual_seed(0)
    model = build_plan_model(name, "tiny", device="cpu")
    n_base = count_parameters(model.transformer)
    n_lora = attach_lora(
        model.transformer, rank=rank, target_modules=model.lora_target_modules, dtype=torch.float32
    )
    assert (n_base, n_lora) == (report.transformer_params, report.lora_params)
    if checkpointing:
        model.transformer.enable_gradient_checkpointing()
    opt = torch.optim.AdamW([p for p in model.transformer.parameters() if p.requires_grad], lr=1e-4)
    inputs = model.forward_kwargs(report.shape, torch.device("cpu"), torch.float32)
    lora_training_step(model.transformer, inputs, opt)  # allocates AdamW's state
    step_peak = peak_bytes(lambda: lora_training_step(model.transformer, inputs, opt))
    # Allocated before the step, counted exactly: base and LoRA weights, AdamW's m and v.
    resident = 4 * n_base + 12 * n_lora
    measured = resident + step_peak
    planned = est.total(1) - est.frozen_components  # VAE not resident in this check
    assert step_peak > 5 * 4 * n_base  # activations dominate the weights in this setting
    assert abs(planned - measured) <= 0.2 * measured, (planned, measured)
    # The activation part alone: the step's peak less the LoRA gradients.
    activations = step_peak - 4 * n_lora
    assert abs(est.per_sample - activations) <= 0.2 * activations, (est.per_sample, activations)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "checkpointing"), [("flux2-klein", False), ("qwen-image-edit-2511", True)])
def test_fsdp_plan_within_20_percent_of_measured_step_on_two_processes(
    name: str, checkpointing: bool, tmp_path: Path
) -> None:
    # Two gloo processes shard the tiny transformer as the recipes do; each measures its own
    # micro-step (forward, backward, LoRA all-reduce, AdamW step) against the plan's FSDP row.
    port, worker = str(free_port()), Path(__file__).with_name("fsdp_peak_worker.py")
    args = [name, "128", "2", "on" if checkpointing else "off", str(tmp_path)]
    procs = [
        subprocess.Popen([sys.executable, str(worker), *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=cli_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2",
                                                MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                                                PYTHONPATH=f"{REPO}:{REPO / 'backbones'}"))
        for r in range(2)
    ]  # fmt: skip
    for proc in procs:
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, output[-2000:]
    for rank in range(2):
        record = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert record["weights_measured"] == record["weights_planned"]  # the base's shard: n·b/P
        measured, planned = record["measured"], record["planned"]
        assert abs(planned - measured) <= 0.2 * measured, (rank, planned, measured)
