"""Benchmark the core advantage / weighting functions against per-group Python loops.

The baseline is written the way research trainers write it: loop over the unique group ids,
mask, then mean/std per group (Flow-Factory's `compute_advantages`, NVlabs GDPO). Both run in
the same process on the same data, so the printed ratio is robust to machine noise.

    python benchmarks/bench_core.py            # N = 576 (24 groups, 2 rewards) and N = 100k
    python benchmarks/bench_core.py --quick    # fewer repeats
"""

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import rewardkit


def loop_group_advantages(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(rewards)
    for g in torch.unique(group_ids):
        mask = group_ids == g
        r = rewards[mask]
        out[mask] = (r - r.mean()) / r.std(correction=0).clamp_min(1e-6)
    return out


def loop_gdpo_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    summed = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    for k in range(rewards.shape[1]):
        summed += weights[k] * loop_group_advantages(rewards[:, k], group_ids)
    return (summed - summed.mean()) / summed.std(correction=0).clamp_min(1e-6)


def loop_dar_weights(similarity: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    groups = torch.unique(group_ids)
    raw = []
    for g in groups:
        p = similarity[group_ids == g].clamp(0, 1).mean()
        raw.append(((1 - p).clamp_min(0) + 1e-6).pow(2.0).clamp(0.5, 5.0))
    raw_t = torch.stack(raw)
    w = (raw_t / raw_t.mean().clamp_min(1e-6)).clamp(0.5, 5.0)
    out = torch.empty_like(similarity)
    for g, wg in zip(groups, w, strict=True):
        out[group_ids == g] = wg
    return out


def benchmark_cases(
    rewards: torch.Tensor, group_ids: torch.Tensor, weights: torch.Tensor
) -> dict[str, tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]]]:
    """(baseline, rewardkit) pairs of zero-argument callables on the same data."""
    return {
        "group_advantages": (
            lambda: loop_group_advantages(rewards[:, 0], group_ids),
            lambda: rewardkit.group_advantages(rewards[:, 0], group_ids),
        ),
        "gdpo_advantages": (
            lambda: loop_gdpo_advantages(rewards, group_ids, weights),
            lambda: rewardkit.gdpo_advantages(rewards, group_ids, weights),
        ),
        "dar_weights": (
            lambda: loop_dar_weights(rewards[:, 0], group_ids),
            lambda: rewardkit.dar_weights(rewards[:, 0], group_ids),
        ),
    }


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke test)")
    parser.add_argument("--group-size", type=int, default=24, help="samples per group (default 24)")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    print(f"{'function':<18}{'N':>8}{'groups':>8}{'loop ms':>11}{'rewardkit ms':>14}{'speed-up':>10}")
    for n in (576, 100_000):
        groups = n // args.group_size
        group_ids = torch.randperm(n) % groups
        rewards = torch.rand(n, 2)
        weights = torch.tensor([1.0, 0.8])
        repeats = (3 if args.quick else 15) if n > 10_000 else (10 if args.quick else 100)
        cases = benchmark_cases(rewards, group_ids, weights)
        for name, (baseline, ours) in cases.items():
            torch.testing.assert_close(ours(), baseline(), rtol=1e-4, atol=1e-5)  # same numbers first
            t_loop = median_seconds(baseline, max(1, repeats // (10 if n > 10_000 else 1)))
            t_ours = median_seconds(ours, repeats)
            ratio = t_loop / t_ours
            print(f"{name:<18}{n:>8}{groups:>8}{t_loop * 1e3:>11.2f}{t_ours * 1e3:>14.3f}{ratio:>9.1f}x")


if __name__ == "__main__":
    main()
