"""Plain float64 loop implementations of the core formulas, written independently of rewardkit.

They follow the spec line by line with Python floats and explicit loops over groups, so a
vectorisation bug in the library cannot hide in both.
"""

import math
from collections import defaultdict


def groups_of(group_ids: list[int]) -> dict[int, list[int]]:
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(group_ids):
        members[g].append(i)
    return dict(members)


def mean(xs: list[float]) -> float:
    return math.fsum(xs) / len(xs)


def std(xs: list[float], ddof: int) -> float:
    m = mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - ddof))


def group_advantages(
    rewards: list[float], group_ids: list[int], std_floor: float, ddof: int, global_std: bool
) -> list[float]:
    out = [0.0] * len(rewards)
    batch_std = max(std(rewards, ddof), std_floor)
    for idx in groups_of(group_ids).values():
        values = [rewards[i] for i in idx]
        m = mean(values)
        s = batch_std if global_std else max(std(values, ddof), std_floor)
        constant = max(values) == min(values)
        for i in idx:
            out[i] = 0.0 if constant else (rewards[i] - m) / s
    return out


def gdpo_advantages(
    rewards: list[list[float]], group_ids: list[int], weights: list[float], std_floor: float, ddof: int
) -> list[float]:
    n, k = len(rewards), len(weights)
    summed = [0.0] * n
    for col in range(k):
        for idx in groups_of(group_ids).values():
            valid = [i for i in idx if not math.isnan(rewards[i][col])]
            if len(valid) <= ddof or len(valid) == 0:
                continue
            values = [rewards[i][col] for i in valid]
            if max(values) == min(values):
                continue
            m, s = mean(values), max(std(values, ddof), std_floor)
            for i in valid:
                summed[i] += weights[col] * (rewards[i][col] - m) / s
    if max(summed) == min(summed):
        return [0.0] * n
    m, s = mean(summed), max(std(summed, ddof), std_floor)
    return [(x - m) / s for x in summed]


def dar_weights(
    difficulty: list[float],
    group_ids: list[int],
    gamma: float,
    w_min: float,
    w_max: float,
    eps: float,
    reclip: bool,
) -> list[float]:
    members = groups_of(group_ids)
    raw: dict[int, float] = {}
    for g, idx in members.items():
        p = mean([min(max(difficulty[i], 0.0), 1.0) for i in idx])
        raw[g] = min(max((max(0.0, 1.0 - p) + eps) ** gamma, w_min), w_max)
    norm = max(mean(list(raw.values())), eps)
    out = [0.0] * len(difficulty)
    for g, idx in members.items():
        w = raw[g] / norm
        if reclip:
            w = min(max(w, w_min), w_max)
        for i in idx:
            out[i] = w
    return out


def drs_scale(similarity: float, n_refs: int, tau: float, k_mode: str, k0: float, k1: float) -> float:
    k = {"increase": k0 + k1 * (n_refs - 2), "decrease": k0 + k1 * (6 - n_refs), "flat": k0}[k_mode]
    return 1.0 / (1.0 + math.exp(-k * (similarity - tau)))


def clipped_policy_loss(
    log_prob: list[float],
    old_log_prob: list[float],
    advantages: list[float],
    clip: tuple[float, float],
    adv_clip: tuple[float, float],
    weights: list[float] | None,
) -> float:
    total = 0.0
    for i, (lp, old, a) in enumerate(zip(log_prob, old_log_prob, advantages, strict=True)):
        a = min(max(a, adv_clip[0]), adv_clip[1])
        r = math.exp(lp - old)
        r_clipped = min(max(r, 1.0 + clip[0]), 1.0 + clip[1])
        term = max(-a * r, -a * r_clipped)
        total += term * (1.0 if weights is None else weights[i])
    return total / len(log_prob)
