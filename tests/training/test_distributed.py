"""Two CPU processes (gloo) give exactly the single-process advantages and DAR weights."""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

import rewardkit
from rewardkit.training.distributed import gather_batch

WORKER = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist, rewardkit
    from rewardkit.training.distributed import gather_batch
    rank, world, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    dist.init_process_group("gloo", rank=rank, world_size=world)
    data = torch.load(out + "/data.pt", weights_only=True)
    # Uneven shards: rank 0 takes 10 rows, rank 1 the rest; groups span both ranks.
    rows = slice(0, 10) if rank == 0 else slice(10, None)
    (rewards, groups, sim), local = gather_batch([data["rewards"][rows], data["groups"][rows], data["sim"][rows]])
    adv = rewardkit.gdpo_advantages(rewards, groups, [1.0, 0.8])[local]
    weights = rewardkit.dar_weights(sim, groups)[local]
    torch.save({"adv": adv, "weights": weights}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_processes_match_one(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    groups = torch.randperm(24, generator=gen) % 4  # 4 groups of 6, shuffled over both ranks
    data = {
        "rewards": torch.rand(24, 2, generator=gen),
        "groups": groups,
        "sim": torch.rand(24, generator=gen),
    }
    torch.save(data, tmp_path / "data.pt")
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    procs = [
        subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(r), "2", str(tmp_path)], env=env)
        for r in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    parts = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single_adv = rewardkit.gdpo_advantages(data["rewards"], groups, [1.0, 0.8])
    single_w = rewardkit.dar_weights(data["sim"], groups)
    assert torch.equal(torch.cat([p["adv"] for p in parts]), single_adv)
    assert torch.equal(torch.cat([p["weights"] for p in parts]), single_w)


def test_single_process_is_identity() -> None:
    x = torch.arange(5.0)
    (gathered,), local = gather_batch([x])
    assert gathered is x and local == slice(0, 5)


def test_bad_input() -> None:
    import pytest

    with pytest.raises(ValueError, match="tensors is empty"):
        gather_batch([])
    with pytest.raises(ValueError, match="same number of rows"):
        gather_batch([torch.zeros(2), torch.zeros(3)])
