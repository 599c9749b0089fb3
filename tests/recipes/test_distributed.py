"""Two CPU processes (gloo, torchrun-style environment) train exactly like one process."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.recipes.conftest import cli_env, free_port, grpo_config, launch, write_yaml


def _debug(out: Path, rank: int) -> dict[str, torch.Tensor]:
    return load_file(str(out / "debug" / f"epoch0_rank{rank}.safetensors"))


@pytest.mark.slow
def test_two_processes_match_one(tiny: dict[str, Path], data: dict[str, Path], tmp_path: Path) -> None:
    # Groups of 4 span both processes (each optimizer-step chunk of 4 samples is split 2 + 2);
    # batch-1 forwards everywhere, so every transformer call has the same shape in both runs.
    procs, outs = {}, {}
    for world in (1, 2):  # both runs at once (3 processes)
        outs[world] = tmp_path / f"world{world}"
        config = grpo_config(
            tiny, data, outs[world], rollout={"micro_batch": 1}, train={"per_device_batch_size": 1},
            log={"debug_tensors": True},
        )  # fmt: skip
        path = write_yaml(config, tmp_path / f"world{world}.yaml")
        port = str(free_port())
        procs[world] = [
            launch("grpo", path, env=cli_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world),
                                              MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
            for r in range(world)
        ]  # fmt: skip
    runs = {}
    for world, group in procs.items():
        assert [p.wait(timeout=300) for p in group] == [0] * world
        runs[world] = [_debug(outs[world], r) for r in range(world)]

    single = runs[1][0]
    ids = torch.cat([d["sample_ids"] for d in runs[2]])
    assert sorted(ids.tolist()) == list(range(8)) == single["sample_ids"].tolist()
    # Rank 0 holds samples 0, 1, 4, 5 and rank 1 holds 2, 3, 6, 7: both groups span both ranks.
    assert runs[2][0]["sample_ids"].tolist() == [0, 1, 4, 5]
    order = torch.argsort(ids)
    for key in ("rewards", "advantages", "dar_weights"):
        merged = torch.cat([d[key] for d in runs[2]])[order]
        assert torch.equal(merged, single[key]), key
    assert single["advantages"].abs().sum() > 0 and single["dar_weights"].unique().numel() > 1
    # The updates agree up to float32 summation order: the gradient is (g0 + g1) + (g2 + g3) over
    # two processes but ((g0 + g1) + g2) + g3 on one, and Adam's first step g / (|g| + eps) turns
    # last-bit differences of gradients near eps = 1e-8 into up to ~1e-6 of the 5e-2 step.
    for prefix, atol in (("first_update/", 1e-6), ("adapter/", 2e-5)):
        keys = [k for k in single if k.startswith(prefix)]
        assert keys
        for key in keys:
            assert torch.equal(runs[2][0][key], runs[2][1][key]), key  # ranks agree exactly
            torch.testing.assert_close(runs[2][0][key], single[key], rtol=0, atol=atol)
        # peft lists lora_A then lora_B per module; B starts at 0, so a non-zero B means an update.
        assert sum(float(single[k].abs().sum()) for k in keys[1::2]) > 0
