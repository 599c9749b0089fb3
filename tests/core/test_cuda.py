"""The core math on CUDA gives the CPU's numbers (runs where a GPU is present)."""

import pytest
import torch

import rewardkit

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_core_functions_match_cpu_on_cuda(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    n, groups = 576, 24
    group_ids = torch.randperm(n, generator=gen) % groups
    rewards = torch.rand(n, 2, generator=gen).to(dtype)
    rewards[::7, 1] = torch.nan
    sim = torch.rand(n, generator=gen).to(dtype)
    n_refs = 2 + torch.randperm(n, generator=gen) % 5
    log_prob = (torch.randn(n, generator=gen) * 1e-4).to(dtype)

    def run(device: str) -> list[torch.Tensor]:
        to = lambda t: t.to(device)  # noqa: E731
        adv = rewardkit.gdpo_advantages(to(rewards), to(group_ids), [1.0, 0.8])
        w = rewardkit.dar_weights(to(sim), to(group_ids))
        loss, stats = rewardkit.clipped_policy_loss(
            to(log_prob), torch.zeros_like(to(log_prob)), adv, weights=w
        )
        return [
            rewardkit.group_advantages(to(rewards[:, 0]), to(group_ids)),
            adv,
            w,
            rewardkit.drs_scale(to(sim), to(n_refs)),
            loss,
            stats.clip_frac,
        ]

    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    for cpu, gpu in zip(run("cpu"), run("cuda"), strict=True):
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, **tol)
