r"""Stage II recipe: Flow-GRPO with GDPO advantages, DAR and DRS (``rewardkit grpo``).

One epoch (docs: Training, *What one GRPO epoch does*; the whole loop is :func:`train`, top to bottom):

1. **Rollouts.** ``prompts_per_epoch`` instances × ``group_size`` samples with the SDE dynamics
   at this epoch's window steps (``sde_window``, the same on every rank). Sample $s$ draws all
   its noise from its own generator seeded by ``(seed, epoch, s)``, so how the samples are
   spread over processes does not change them.
2. **Rewards** per process, pointwise (DRS lives in the similarity reward's options).
3. **Advantages and DAR weights** on the rewards gathered from every process, ordered by
   sample id (whole groups), with the registered estimator named by ``advantage.estimator``
   (:mod:`rewardkit.recipes.registry`): ``gdpo_advantages`` (default), ``group_advantages``
   of the weighted sum, seed 003's moving-average baseline, or a custom one.
4. **A single pass** over the rollouts in ``gradient_step_per_epoch`` equal chunks; per
   micro-batch and trained step the fused log-prob, the policy loss (``advantage.policy_loss``,
   by default the clipped one) weighted by DAR, and optionally $\beta\,\mathrm{KL}$ (the
   ``kl.type`` form) against the policy at RL start; gradients averaged over processes,
   clipped, one AdamW step per chunk.
5. **EMA** of the adapter every ``ema.update_interval`` epochs, then metrics, periodic
   evaluation of the EMA policy and a checkpoint.

Samples are assigned to processes chunk by chunk (chunk $c$ of the global sample list is split
evenly over the processes), so each optimizer step averages exactly the same samples on one
process as on N. At the end the EMA adapter is saved (``adapter/``) and exported for diffusers
and peft (``export/``), and ``reward_curve.png`` is drawn.
"""

import argparse
import itertools
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from rewardkit.backbone import Backbone, Trajectory, rollout, step_log_prob
from rewardkit.core.baseline import BaselineState
from rewardkit.core.schedules import sde_window
from rewardkit.core.sde import sde_coefficients
from rewardkit.core.weighting import dar_weights
from rewardkit.recipes import _common as rc
from rewardkit.recipes._data import EncodedSplit
from rewardkit.recipes._metrics import MetricLogger, Stats, plot_history, reward_metrics, tensor_metrics
from rewardkit.recipes.config import ConfigError, GRPOConfig, config_fingerprint
from rewardkit.recipes.registry import (
    AdvantageInputs,
    KLForm,
    KLInputs,
    PolicyLossInputs,
    get_advantage,
    get_kl,
    get_policy_loss,
)
from rewardkit.rewards import RewardSet
from rewardkit.training import (
    EMAState,
    capture_rng_state,
    ema_decay,
    ema_init,
    ema_update,
    export_lora,
    gather_batch,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

__all__ = [
    "GRPOResult",
    "advantages_and_weights",
    "check_sharded_plan",
    "configure",
    "evaluate",
    "run",
    "train",
]

# Keys that may change between a run and its resumption.
_RESUMABLE = ("log", "train.epochs", "eval", "data.eval", "data.eval_limit", "extra_imports")


@dataclass
class GRPOResult(rc.StageResult):
    """What [`train`][rewardkit.recipes.grpo.train] returns.

    Attributes:
        history: one record per epoch (``epoch``, ``reward/mean``, ``reward/<name>/mean``, ...).
        adapter_dir: the final (EMA) adapter in the backbone's format.
        export: the diffusers file and peft folder, or None on non-main processes.
    """


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``rewardkit grpo`` arguments."""
    rc.add_arguments(
        parser,
        epilog=(
            "Example: rewardkit grpo --config grpo.yaml --adapter runs/sft/adapter --output-dir runs/grpo. "
            "Multi-GPU: accelerate launch --multi_gpu --num_processes 8 -m rewardkit.cli grpo ...; "
            "sharded: accelerate launch --config_file examples/configs/accelerate_fsdp.yaml ... "
            "(docs/scaling.md)"
        ),
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``rewardkit grpo``: 0 on success, 2 on a configuration or checkpoint error."""
    return rc.run_recipe(GRPOConfig, "grpo", args, train)


def advantages_and_weights(
    config: GRPOConfig,
    rewards: Tensor,
    weights: Tensor,
    groups: Tensor,
    difficulty: Tensor,
    baseline: BaselineState,
) -> tuple[Tensor, Tensor, BaselineState]:
    """Advantages, DAR loss weights and the new baseline of the *whole* epoch batch.

    Args:
        config: the run config (``advantage`` and ``dar`` sections).
        rewards: `(N, K)` rewards of every sample, NaN where undefined.
        weights: `(K,)` reward weights.
        groups: `(N,)` group id of every sample.
        difficulty: `(N,)` DAR difficulty signal (raw similarity).
        baseline: moving-average baseline state (``baseline`` estimator only).

    Raises:
        ValueError: unknown estimator, or one that returns other than `(N,)` advantages.
    """
    a = config.advantage
    adv, baseline = get_advantage(a.estimator)(AdvantageInputs(rewards, weights, groups, baseline), a)
    if not isinstance(adv, Tensor) or adv.shape != groups.shape:
        raise ValueError(
            f"advantage estimator {a.estimator!r} must return ({len(groups)},) advantages, got "
            f"{tuple(adv.shape) if isinstance(adv, Tensor) else type(adv).__name__}"
        )
    d = config.dar
    loss_weights = (
        dar_weights(
            difficulty, groups, gamma=d.gamma, w_min=d.w_min, w_max=d.w_max, eps=d.eps, reclip=d.reclip
        )
        if d.enabled
        else torch.ones_like(adv)
    )
    return adv, loss_weights, baseline


def check_sharded_plan(config: GRPOConfig, world: int) -> None:
    """Refuse a plan whose processes would call the sharded denoiser unequally often.

    Per process and optimizer-step chunk, a group's rollout calls the denoiser
    ``ceil(n / rollout.micro_batch)`` times per step and its update ``ceil(n /
    per_device_batch_size)`` times per trained step, for its ``n`` samples of the group. A size
    that divides every process's part of every group gives every process the same count; the
    error names the largest such size.
    """
    t = config.train
    total = t.prompts_per_epoch * t.group_size
    parts = [
        [len(list(members)) for chunk in rc.chunk_plan(total, t.gradient_step_per_epoch, rank, world)
         for _, members in itertools.groupby(chunk, key=lambda s: s // t.group_size)]
        for rank in range(world)
    ]  # fmt: skip
    common = math.gcd(*(n for rank_parts in parts for n in rank_parts))
    for what, size, option in (
        ("rollout", config.rollout.micro_batch, "rollout.micro_batch"),
        ("update", t.per_device_batch_size, "train.per_device_batch_size"),
    ):
        counts = [sum(-(-n // (size or n)) for n in rank_parts) for rank_parts in parts]
        rc.check_same_forward_count(
            counts,
            what,
            fix=f"set {option} to a divisor of {common} (it divides every process's part of every group)",
        )


@torch.no_grad()
def _reference_velocity(
    backbone: Backbone,
    traj: Trajectory,
    step: int,
    rows: Tensor,
    reference: list[Tensor] | None,
    params: list[torch.nn.Parameter],
) -> Tensor:
    """Velocity of the KL reference policy (call it before the policy forward: it swaps weights)."""
    if reference is None:  # the backbone without adapter
        return step_log_prob(backbone, traj, step, samples=rows, adapter=False).velocity
    with rc.swapped_weights(params, reference):  # the policy at RL start
        return step_log_prob(backbone, traj, step, samples=rows).velocity


def _kl_inputs(traj: Trajectory, step: int, rows: Tensor, velocity: Tensor, ref_v: Tensor) -> KLInputs:
    """What a KL form needs at the trained step (docs: The math, KL regularisers)."""
    sigmas = traj.sigmas
    coef = sde_coefficients(
        float(sigmas[step]),
        float(sigmas[step + 1]),
        kind=traj.kind,
        noise_level=traj.noise_level,
        sigma_max=float(sigmas[1]),
    )
    noise_std = float(coef.std)
    sigma_t = noise_std / math.sqrt(float(sigmas[step] - sigmas[step + 1]))  # σ_t without sqrt(|dt|)
    x = traj.latents[rows, traj.position(step)].to(velocity.device)
    return KLInputs(velocity, ref_v, x, coef, sigma_t)


@torch.no_grad()
def evaluate(config: GRPOConfig, split: EncodedSplit, rewards: RewardSet, dist: rc.Dist) -> dict[str, float]:
    """Mean rewards of deterministic (ODE) samples on the evaluation split, one per instance."""
    e = config.eval
    images, contexts = [], []
    for k, keep in rc.rank_positions(len(split), dist):
        gen = rc.generator(e.seed, k)
        out = rollout(
            split.backbone,
            split.condition(k),
            group_size=1,
            num_steps=e.num_steps,
            generator=gen,
            guidance_scale=e.guidance_scale,
        )
        assert out.images is not None
        if keep:  # (a sharded process's padding item is run, then dropped)
            images.append(out.images)
            contexts.append(split.example(k).context)
    # A process may get no instance when the split is smaller than the number of processes.
    scored = rewards(torch.cat(images), contexts).rewards if images else torch.empty(0, len(rewards.names))
    (all_rewards,), _ = gather_batch([scored.to(dist.device)])
    return {f"eval/{name}": float(all_rewards[:, k].nanmean()) for k, name in enumerate(rewards.names)}


def train(config: GRPOConfig, *, resume: str | None = None) -> GRPOResult:
    """Run Stage II with ``config`` (see the module docstring); ``resume="latest"`` continues."""
    rc.import_modules(config.extra_imports)
    dist = rc.init_distributed()
    t, r, log, a = config.train, config.rollout, config.log, config.advantage
    out = Path(log.output_dir)
    resume_from = rc.resolve_resume(out / "checkpoints", resume)
    if config.kl.beta > 0 and (r.kind == "ode" or r.noise_level == 0):
        raise ConfigError(
            "kl.beta > 0 needs stochastic window steps (rollout.kind != 'ode', noise_level > 0)"
        )
    total = t.prompts_per_epoch * t.group_size
    my_chunks = rc.chunk_plan(total, t.gradient_step_per_epoch, dist.rank, dist.world)

    # -- model, policy at RL start, optimizer, rewards, data ----------------------------------------
    if dist.sharded:
        check_sharded_plan(config, dist.world)
    backbone = rc.load_model(config.model, dist, seed=t.seed)
    params = backbone.adapter_parameters()
    named = [(str(i), p) for i, p in enumerate(params)]
    use_kl = config.kl.beta > 0
    policy_loss = get_policy_loss(a.policy_loss)
    kl_form: KLForm | None = get_kl(config.kl.type) if use_kl else None
    # The KL reference: the adapter at RL start (e.g. the SFT one), or None for the bare base model
    # (which is also the RL start when the adapter is fresh).
    start_adapter = config.kl.reference == "rl_start" and config.model.adapter is not None
    reference = [p.detach().clone() for p in params] if use_kl and start_adapter else None
    optimizer, scheduler = rc.make_optimizer(params, config.optim)
    rewards = RewardSet.from_specs([{**s.model_dump(), "name": s.name or s.reward} for s in config.rewards])
    d = config.data
    train_split = EncodedSplit.load(backbone, d, d.train, d.limit, negative_prompt=r.negative_prompt)
    eval_split = None
    if d.eval and config.eval.every:
        eval_split = EncodedSplit.load(
            backbone, d, d.eval, d.eval_limit, negative_prompt=config.eval.negative_prompt
        )
    fingerprint = config_fingerprint(config, ignore=_RESUMABLE)

    # -- state, or resume ---------------------------------------------------------------------------
    ema = ema_init(named) if config.ema.enabled else None
    baseline, start, step, history = BaselineState(), 0, 0, []
    if resume_from is not None:
        state = load_checkpoint(resume_from, fingerprint=fingerprint)
        with torch.no_grad():
            for p, saved in zip(params, state["adapter"], strict=True):
                p.copy_(saved)
        if ema is not None:
            ema = EMAState(
                {k: v.to(dist.device) for k, v in state["ema"]["shadow"].items()}, state["ema"]["count"]
            )
        if reference is not None:
            reference = [v.to(dist.device) for v in state["reference"]]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        baseline = BaselineState(*state["baseline"])
        start, step, history = state["epoch"], state["step"], state["history"]
        print(f"[grpo] resumed from {resume_from} at epoch {start} (step {step})")
    logger = MetricLogger.for_run(dist, log, config, "grpo")
    show = log.progress and dist.is_main

    # -- the loop -----------------------------------------------------------------------------------
    for epoch in range(start, t.epochs):
        began = time.perf_counter()
        window = sde_window(
            r.num_steps,
            epoch=epoch,
            seed=t.seed,
            train_steps=r.train_steps,
            num_train_steps=r.num_train_steps,
        ).tolist()
        first = epoch * t.prompts_per_epoch  # data position: instances consumed before this epoch

        # 1. rollouts with the policy at epoch start, one call per (chunk, instance) piece;
        #    sample s draws its noise from its own generator, wherever it runs
        pieces: list[list[tuple[Trajectory, list[int]]]] = [[] for _ in my_chunks]
        images, contexts = [], []
        bar = tqdm(total=total // dist.world, desc=f"rollout {epoch}", unit="sample", disable=not show)
        for c, ids in enumerate(my_chunks):
            for j, members in itertools.groupby(ids, key=lambda s: s // t.group_size):
                sample_ids = list(members)
                position = rc.data_order(len(train_split), t.seed, (first + j) // len(train_split))[
                    (first + j) % len(train_split)
                ]
                sampled = rollout(
                    backbone,
                    train_split.condition(position),
                    group_size=len(sample_ids),
                    num_steps=r.num_steps,
                    generator=[rc.generator(t.seed, epoch, s) for s in sample_ids],
                    sde_steps=window,
                    noise_level=r.noise_level,
                    kind=r.kind,
                    guidance_scale=r.guidance_scale,
                    micro_batch=r.micro_batch,
                )
                assert sampled.images is not None
                pieces[c].append((sampled.trajectory, sample_ids))
                bar.update(len(sample_ids))
                images.append(sampled.images)
                contexts += [train_split.example(position).context] * len(sample_ids)
        bar.close()
        rollout_time = time.perf_counter() - began

        # 2. rewards, per process
        scored = rewards(torch.cat(images), contexts)
        column = scored.names.index(config.dar.reward) if config.dar.enabled else 0
        difficulty = scored.extras[scored.names[column]].get("sim_raw", scored.rewards[:, column])

        # 3. advantages and DAR weights on the rewards of all processes, in global sample order
        local_ids = torch.tensor([s for chunk in pieces for _, ids in chunk for s in ids])
        gathered, mine = gather_batch(
            [x.to(dist.device) for x in (scored.rewards, local_ids, difficulty.float())]
        )
        all_rewards, all_ids, all_difficulty = (x.cpu() for x in gathered)
        order = torch.argsort(all_ids)
        adv_sorted, w_sorted, baseline = advantages_and_weights(
            config,
            all_rewards[order],
            scored.weights,
            all_ids[order] // t.group_size,
            all_difficulty[order],
            baseline,
        )
        adv, loss_w = torch.empty_like(adv_sorted), torch.empty_like(w_sorted)
        adv[order], loss_w[order] = adv_sorted, w_sorted  # back to the gathered order
        adv, loss_w = adv[mine], loss_w[mine]

        # 4. a single pass over the rollouts: one optimizer step per chunk
        stats, cursor, first_update = Stats(), 0, list[Tensor]()
        bar = tqdm(total=total // dist.world, desc=f"update {epoch}", unit="sample", disable=not show)
        for ids, chunk in zip(my_chunks, pieces, strict=True):
            for traj, sample_ids in chunk:
                for rows in torch.split(torch.arange(len(sample_ids)), t.per_device_batch_size):
                    pos = rows + cursor  # positions in this process's sample order
                    for k, i in enumerate(traj.step_indices):
                        ref_v = (
                            _reference_velocity(backbone, traj, i, rows, reference, params)
                            if use_kl
                            else None
                        )
                        new = step_log_prob(backbone, traj, i, samples=rows, backend=r.backend)
                        dev = new.log_prob.device
                        loss, ps = policy_loss(
                            PolicyLossInputs(
                                new.log_prob,
                                traj.log_probs[rows, k].to(dev),
                                adv[pos].to(dev),
                                loss_w[pos].to(dev),
                            ),
                            a,
                        )
                        if ref_v is not None and kl_form is not None:
                            kl = kl_form(_kl_inputs(traj, i, rows, new.velocity, ref_v), config.kl).mean()
                            loss = loss + config.kl.beta * kl
                            stats.add(kl=kl.detach())
                        # Mean over the chunk's samples, summed over trained steps (as the reference).
                        torch.autograd.backward(loss * len(rows) / len(ids))
                        stats.add(
                            loss=loss.detach(),
                            clip_frac=ps.clip_frac,
                            ratio_min=ps.ratio_min,
                            ratio_max=ps.ratio_max,
                            approx_kl=ps.approx_kl,
                        )
                cursor += len(sample_ids)
                bar.update(len(sample_ids))
            stats.add(
                grad_norm=rc.clip_and_step(dist, params, optimizer, scheduler, config.optim.max_grad_norm)
            )
            step += 1
            if log.debug_tensors and not first_update:  # the first optimizer step of the epoch
                first_update = [p.detach().cpu().clone() for p in params]
        bar.close()

        # 5. EMA, metrics, evaluation of the EMA policy, checkpoint
        if ema is not None and (epoch + 1) % config.ema.update_interval == 0:
            ema = ema_update(ema, named, ema_decay(epoch, config.ema.decay))
        elapsed = time.perf_counter() - began
        record = {
            "epoch": float(epoch + 1),
            "step": float(step),
            **reward_metrics(all_rewards, scored.names, scored.weights),
        }
        # the pre-DRS similarity (DAR's difficulty signal): where the policy sits relative to τ
        record[f"reward/{scored.names[column]}/sim_raw_mean"] = float(all_difficulty.nanmean())
        record.update(tensor_metrics(adv=adv_sorted, dar=w_sorted))
        record.update(stats.means(dist))
        record.update(
            {
                "sde_step": window[0],
                "time/rollout": rollout_time,
                "time/epoch": elapsed,
                "samples_per_s": total / elapsed,
            }
        )
        if eval_split is not None and (epoch + 1) % config.eval.every == 0:
            with rc.swapped_weights(params, _ema_weights(ema, params)):
                record.update(evaluate(config, eval_split, rewards, dist))
        history.append(record)
        logger.log(step, record, header=f"epoch {epoch + 1}/{t.epochs}")
        if log.debug_tensors:  # this process's view of the epoch, for tests and debugging
            rc.write_debug(
                out / "debug" / f"epoch{epoch}_rank{dist.rank}.safetensors",
                sample_ids=local_ids,
                advantages=adv,
                dar_weights=loss_w,
                rewards=scored.rewards,
                first_update=first_update,
                adapter=list(params),
            )
        if ((epoch + 1) % log.save_every == 0 or epoch + 1 == t.epochs) and dist.is_main:
            state = {
                "adapter": list(params),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": capture_rng_state(),
                "epoch": epoch + 1,
                "step": step,
                "history": history,
                "data_position": first + t.prompts_per_epoch,
                "baseline": tuple(baseline),
                "reference": reference,
                "ema": None if ema is None else {"shadow": ema.shadow, "count": ema.num_updates},
            }
            path = save_checkpoint(out / "checkpoints", step, state, fingerprint=fingerprint, keep=log.keep)
            print(f"[grpo] checkpoint {path}", flush=True)
        dist.barrier()

    # -- outputs: the EMA adapter, its exports, the reward curve ------------------------------------
    result = GRPOResult(history=history)
    if dist.is_main:
        with rc.swapped_weights(params, _ema_weights(ema, params)):
            result.adapter_dir = backbone.save_adapter(out / "adapter")
            result.export = export_lora(backbone, out / "export")
        if log.plot:
            keys = [f"reward/{n}/mean" for n in rewards.names]
            keys += [k for k in (history[-1] if history else {}) if k.startswith("eval/")]
            plot_history(history, keys, out / "reward_curve.png", x="epoch", title="GRPO rewards")
        print(
            f"[grpo] EMA adapter: {result.adapter_dir}; exports: {result.export.diffusers_file.parent}, "
            f"{result.export.peft_dir}"
        )
    logger.close()
    dist.barrier()
    return result


def _ema_weights(ema: EMAState | None, params: list[torch.nn.Parameter]) -> list[Tensor]:
    """The EMA weights in parameter order (the live weights without an EMA)."""
    return list(params) if ema is None else [ema.shadow[str(i)] for i in range(len(params))]


if __name__ == "__main__":
    from rewardkit.cli import main

    raise SystemExit(main(["grpo", *sys.argv[1:]]))
