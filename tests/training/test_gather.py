"""gather_samples: tensors and strings over 2 gloo processes, in single-process order."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rewardkit.core.advantages import group_advantages
from rewardkit.core.grouping import group_ids
from rewardkit.training import GatheredBatch, gather_samples
from tests.training.test_distributed import _free_port

N = 24

WORKER = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist
    from rewardkit.core.advantages import group_advantages
    from rewardkit.core.grouping import group_ids
    from rewardkit.training import gather_samples
    rank, world, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    dist.init_process_group("gloo", rank=rank, world_size=world)
    data = torch.load(out + "/data.pt", weights_only=True)
    # Uneven shards of a shuffled batch: rank 0 holds 10 samples, rank 1 the other 14.
    idx = data["perm"][:10] if rank == 0 else data["perm"][10:]
    prompts = [data["prompts"][i] for i in idx.tolist()]
    result = {"idx": idx}

    batch = gather_samples(
        {"rewards": data["rewards"][idx], "latents": data["latents"][idx], "mask": data["mask"][idx]},
        strings=prompts,
        order=idx,
    )
    adv = group_advantages(batch.tensors["rewards"], group_ids(batch.strings))
    result.update(
        adv=adv, local_adv=batch.local(adv), strings=batch.strings, order=batch.order, mine=batch.mine,
        sizes=batch.sizes, latents=batch.tensors["latents"], mask=batch.tensors["mask"],
        local_ids=group_ids(prompts),
    )

    plain = gather_samples([data["rewards"][idx]])  # no order: rank order, contiguous rows
    result.update(plain=plain.tensors[0], plain_mine=plain.mine, plain_order=plain.order is None)

    # rank 1 holds nothing at all
    empty = gather_samples(
        {"r": data["rewards"][idx] if rank == 0 else torch.empty(0)},
        strings=prompts if rank == 0 else [],
        order=idx if rank == 0 else torch.empty(0, dtype=torch.long),
    )
    result.update(empty_sizes=empty.sizes, empty_r=empty.tensors["r"], empty_strings=empty.strings,
                  empty_mine=empty.mine)
    only_strings = gather_samples([], strings=[f"rank {rank}"])
    result.update(only_strings=only_strings.strings)

    # Bad calls raise the same error on every rank (none hangs), and later collectives still work.
    r = data["rewards"][idx]
    bad = {
        "duplicate": lambda: gather_samples([r], order=idx if rank == 0 else torch.cat([data["perm"][:1], idx[1:]])),
        "dtype": lambda: gather_samples([r if rank == 0 else r.double()]),
        "shape": lambda: gather_samples([r if rank == 0 else r[:, None]]),
        "keys": lambda: gather_samples({"a" if rank == 0 else "b": r}),
        "local": lambda: gather_samples([r], order=idx if rank == 0 else idx.int()),
        "strings": lambda: gather_samples([r], strings=prompts if rank == 0 else None),
    }
    errors = {}
    for name, call in bad.items():
        try:
            call()
        except (TypeError, ValueError) as error:
            errors[name] = (type(error).__name__, str(error))
    result["errors"] = errors
    result["after"] = gather_samples([torch.tensor([rank])]).tensors[0]
    torch.save(result, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()
    """
)


def _data() -> dict:
    gen = torch.Generator().manual_seed(0)
    groups = torch.arange(N) % 4  # 4 prompts, 6 rollouts each
    return {
        "prompts": [f"prompt {int(g)} ✓" for g in groups],
        "rewards": torch.rand(N, generator=gen),
        "latents": torch.randn(N, 2, 3, generator=gen).to(torch.bfloat16),
        "mask": torch.rand(N, generator=gen) > 0.5,
        "perm": torch.randperm(N, generator=gen),
    }


def test_two_processes_match_one(tmp_path: Path) -> None:
    data = _data()
    torch.save(data, tmp_path / "data.pt")
    (tmp_path / "worker.py").write_text(WORKER)
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "OMP_NUM_THREADS": "1",
    }
    procs = [
        subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(r), "2", str(tmp_path)], env=env)
        for r in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    parts = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    single = group_advantages(data["rewards"], group_ids(data["prompts"]))
    for rank, part in enumerate(parts):
        # the gathered, ordered batch is the single-process batch, so advantages are bitwise equal
        assert torch.equal(part["adv"], single)
        assert part["strings"] == data["prompts"]
        assert torch.equal(part["order"], torch.arange(N))
        assert torch.equal(part["latents"], data["latents"])
        assert torch.equal(part["mask"], data["mask"]) and part["mask"].dtype == torch.bool
        assert part["sizes"] == (10, 14)
        # each rank gets its own rows back, in its local order
        assert torch.equal(part["local_adv"], single[part["idx"]])
        assert torch.equal(part["mine"], part["idx"])  # sorted position == global index here
        assert torch.equal(part["local_ids"], group_ids(data["prompts"])[part["idx"]])
        # without order: rank order, contiguous slice
        in_rank_order = torch.cat([data["rewards"][p["idx"]] for p in parts])
        assert torch.equal(part["plain"], in_rank_order) and part["plain_order"]
        start = 0 if rank == 0 else 10
        assert torch.equal(part["plain_mine"], torch.arange(start, start + len(part["idx"])))
        # an empty rank
        assert part["empty_sizes"] == (10, 0)
        assert torch.equal(part["empty_r"], data["rewards"][parts[0]["idx"].sort().values])
        assert part["empty_strings"] == [data["prompts"][i] for i in parts[0]["idx"].sort().values.tolist()]
        assert part["empty_mine"].numel() == (10 if rank == 0 else 0)
        assert part["only_strings"] == ["rank 0", "rank 1"]
        # the same error everywhere
        errors = part["errors"]
        assert errors["duplicate"][0] == "ValueError" and "appears 2 times" in errors["duplicate"][1]
        assert "rank(s) [0, 1]" in errors["duplicate"][1]
        assert errors["dtype"][0] == "TypeError" and "torch.float64 on rank 1" in errors["dtype"][1]
        assert errors["shape"][0] == "ValueError" and "only the batch dimension" in errors["shape"][1]
        assert errors["keys"][0] == "ValueError" and "keys ['a'] on rank 0" in errors["keys"][1]
        assert errors["local"] == (
            "TypeError",
            "rank 1: order must be an int64 tensor of global sample indices, got torch.int32; use .long()",
        )
        assert "strings is given on rank 0 but not on rank 1" in errors["strings"][1]
        assert torch.equal(part["after"], torch.tensor([0, 1]))
    assert parts[0]["errors"] == parts[1]["errors"]


# ---------------------------------------------------------------- one process


def test_single_process_unordered_is_identity() -> None:
    x, y = torch.arange(5.0), torch.zeros(5, 2)
    batch = gather_samples([x, y], strings=list("abcde"))
    assert isinstance(batch, GatheredBatch)
    assert batch.tensors[0] is x and batch.tensors[1] is y
    assert batch.strings == list("abcde") and batch.order is None
    assert torch.equal(batch.mine, torch.arange(5)) and batch.sizes == (5,) and batch.total == 5
    named = gather_samples({"x": x})
    assert list(named.tensors) == ["x"] and named.tensors["x"] is x


def test_single_process_order_gives_the_unshuffled_batch() -> None:
    data = _data()
    idx = data["perm"]
    prompts = [data["prompts"][i] for i in idx.tolist()]
    batch = gather_samples({"rewards": data["rewards"][idx]}, strings=prompts, order=idx)
    assert batch.strings == data["prompts"]
    assert torch.equal(batch.order, torch.arange(N))
    adv = group_advantages(batch.tensors["rewards"], group_ids(batch.strings))
    single = group_advantages(data["rewards"], group_ids(data["prompts"]))
    assert torch.equal(adv, single)
    assert torch.equal(batch.local(adv), single[idx])
    assert torch.equal(batch.local(batch.tensors["rewards"]), data["rewards"][idx])


def test_order_need_not_be_contiguous() -> None:
    batch = gather_samples([torch.tensor([1.0, 2.0, 3.0])], order=torch.tensor([70, -3, 12]))
    assert torch.equal(batch.tensors[0], torch.tensor([2.0, 3.0, 1.0]))
    assert torch.equal(batch.order, torch.tensor([-3, 12, 70]))
    assert torch.equal(batch.mine, torch.tensor([2, 0, 1]))


def test_bad_input() -> None:
    r = torch.zeros(3)
    with pytest.raises(ValueError, match="nothing to gather"):
        gather_samples([])
    with pytest.raises(ValueError, match=r"one row per local sample.*tensors\['1'\]: 2"):
        gather_samples([r, torch.zeros(2)])
    with pytest.raises(ValueError, match="strings: 2"):
        gather_samples([r], strings=["a", "b"])
    with pytest.raises(TypeError, match="strings must be a sequence of str"):
        gather_samples([r], strings="abc")
    with pytest.raises(TypeError, match=r"strings\[1\] must be a str"):
        gather_samples([r], strings=["a", 2, "c"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="batch dimension"):
        gather_samples({"x": torch.tensor(1.0)})
    with pytest.raises(TypeError, match=r"tensors\['x'\] must be a torch.Tensor"):
        gather_samples({"x": [1.0, 2.0]})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="int64"):
        gather_samples([r], order=torch.tensor([0, 1, 2], dtype=torch.int32))
    with pytest.raises(TypeError, match=r"order must be a torch\.Tensor"):
        gather_samples([r], order=[0, 1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="order must be 1-D"):
        gather_samples([r], order=torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"global index 1 appears 2 times \(held by rank\(s\) \[0\]\)"):
        gather_samples([r], order=torch.tensor([1, 0, 1]))
    batch = gather_samples([r])
    with pytest.raises(ValueError, match="values must have 3 rows"):
        batch.local(torch.zeros(4))
