"""examples/flow_grpo_dropin.py: one Flow-GRPO epoch from rewardkit calls, on 1 and 2 processes."""

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

EXAMPLE = Path(__file__).parents[2] / "examples" / "flow_grpo_dropin.py"


def _load():
    spec = importlib.util.spec_from_file_location("flow_grpo_dropin", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_one_epoch_runs_and_starts_on_policy() -> None:
    out = _load().main([])
    assert out["advantages"].shape == (24,)
    # per-prompt z-scores: each group of 6 sums to 0
    groups = out["all_advantages"].view(4, 6)
    torch.testing.assert_close(groups.sum(dim=1), torch.zeros(4), atol=1e-5, rtol=0)
    assert torch.isfinite(out["losses"]).all()


def test_two_gloo_processes_give_the_single_process_advantages(tmp_path: Path) -> None:
    single = _load().main(["--out", str(tmp_path / "one.pt")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    procs = [
        subprocess.Popen(
            [sys.executable, str(EXAMPLE), "--out", str(tmp_path / "two{rank}.pt")],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank in range(2)
    ]
    outputs = [p.communicate(timeout=180)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    parts = [torch.load(tmp_path / f"two{r}.pt", weights_only=True) for r in range(2)]
    # every rank sees the whole batch's advantages, equal to one process's bit for bit
    for part in parts:
        assert torch.equal(part["all_advantages"], single["all_advantages"])
    index = torch.cat([p["sample_index"] for p in parts])
    assert torch.equal(torch.cat([p["advantages"] for p in parts]), single["advantages"][index])
    assert torch.equal(torch.cat([p["first_log_prob"] for p in parts]), single["first_log_prob"][index])
    # one optimizer step with DDP-style averaged gradients: the same weights up to summation order
    for name, value in single["weights"].items():
        torch.testing.assert_close(parts[0]["weights"][name], value, rtol=0, atol=1e-6)
        assert torch.equal(parts[0]["weights"][name], parts[1]["weights"][name])
