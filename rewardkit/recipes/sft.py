r"""Stage I recipe: supervised flow-matching fine-tuning of a LoRA adapter (``rewardkit sft``).

For each (prompt, references) → target instance the loop draws a grid index $j$ and noise
$\varepsilon$, noises the target's latent $x_0$ to $x_\sigma = (1-\sigma_j)x_0 + \sigma_j\varepsilon$
and regresses the velocity on $\varepsilon - x_0$ with the timestep weight $w_j$
(docs: Training, Configuration):

$$
L = \frac1B\sum_b w_{j_b}\,\frac1D\big\lVert v_\theta(x_{\sigma_{j_b}}, \sigma_{j_b}, c_b)
- (\varepsilon_b - x_{0,b})\big\rVert^2 .
$$

AdamW on the float32 LoRA weights (the backbone runs its forward under its bf16 autocast
option), gradient accumulation, gradient clipping, data-parallel over processes (gradients
averaged), resumable checkpoints. The output folder ends with ``adapter/`` (which
``rewardkit grpo --adapter`` reads directly), ``export/`` (diffusers and peft formats),
``metrics.jsonl`` and ``loss_curve.png``.
"""

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from rewardkit.core.flow_matching import (
    bell_timestep_weights,
    flow_matching_loss,
    noisy_latents,
    sample_timesteps,
    training_sigmas,
)
from rewardkit.recipes import _common as rc
from rewardkit.recipes._data import EncodedSplit
from rewardkit.recipes._metrics import MetricLogger, Stats, plot_history
from rewardkit.recipes.config import ConfigError, SFTConfig, SFTTrainConfig, config_fingerprint
from rewardkit.training import (
    capture_rng_state,
    export_lora,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

__all__ = ["SFTResult", "accumulation_steps", "configure", "heldout_loss", "run", "train"]

# Keys that may change between a run and its resumption. The accumulation may change with the
# number of processes: the fingerprint holds the instances per optimizer step instead.
_RESUMABLE = (
    "log",
    "train.epochs",
    "train.gradient_accumulation_steps",
    "train.global_batch_size",
    "data.eval",
    "data.eval_limit",
    "extra_imports",
)


@dataclass
class SFTResult(rc.StageResult):
    """What [`train`][rewardkit.recipes.sft.train] returns.

    Attributes:
        history: one record per epoch (``epoch``, ``step``, ``train/loss``, ``heldout/loss``).
        adapter_dir: the final adapter in the backbone's format (Stage II reads it).
        export: the diffusers file and peft folder, or None on non-main processes.
    """


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``rewardkit sft`` arguments."""
    rc.add_arguments(
        parser,
        epilog=("Example: rewardkit sft --config sft.yaml --set train.epochs=2 --output-dir runs/sft."),
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``rewardkit sft``: 0 on success, 2 on a configuration or checkpoint error."""
    return rc.run_recipe(SFTConfig, "sft", args, train)


def accumulation_steps(train: SFTTrainConfig, world: int) -> int:
    """Micro-batches per optimizer step on ``world`` processes (derived from ``global_batch_size``).

    Raises:
        ConfigError: both ``global_batch_size`` and ``gradient_accumulation_steps`` set, or a
            global batch that ``world × batch_size`` does not divide.
    """
    if train.global_batch_size is None:
        return train.gradient_accumulation_steps
    if train.gradient_accumulation_steps != 1:
        raise ConfigError(
            "set train.global_batch_size or train.gradient_accumulation_steps, not both "
            "(the accumulation is derived from the global batch)"
        )
    per_micro = world * train.batch_size
    if train.global_batch_size % per_micro:
        raise ConfigError(
            f"train.global_batch_size {train.global_batch_size} must be a multiple of processes "
            f"({world}) × train.batch_size ({train.batch_size})"
        )
    return train.global_batch_size // per_micro


def _instance_loss(
    split: EncodedSplit,
    position: int,
    config: SFTConfig,
    gen: torch.Generator,
    sigmas: Tensor,
    weights: Tensor,
    num: int = 1,
) -> Tensor:
    """Flow-matching loss of one instance at ``num`` timesteps drawn from ``gen`` (mean over them).

    The ``num`` noised copies share the instance's condition, so they go through the backbone as
    one batch of per-sample σ.
    """
    t, backbone = config.train, split.backbone
    condition, x0 = split.condition(position), split.target_latents(position)
    index = sample_timesteps(
        num, t.num_train_timesteps, min_boundary=t.min_boundary, max_boundary=t.max_boundary, generator=gen
    )
    noise = torch.randn((num, *x0.shape[1:]), generator=gen).to(x0.device)
    x0 = x0.expand(num, *x0.shape[1:])
    sigma = sigmas[index].float()
    velocity = backbone.velocity(noisy_latents(x0, noise, sigma.to(x0.device)), sigma, condition)
    return flow_matching_loss(velocity, x0, noise, weights[index].float().to(x0.device))


@torch.no_grad()
def heldout_loss(split: EncodedSplit, config: SFTConfig, dist: rc.Dist, sigmas: Tensor) -> float:
    """Unweighted flow-matching loss on the held-out split at fixed timesteps and noise.

    Instance k always uses the same ``train.eval_timesteps`` grid indices and noise (seeded by
    ``train.seed`` and k), so values before and after training are comparable.
    """
    total = torch.zeros(2, dtype=torch.float64)
    ones = torch.ones_like(sigmas)
    for k, keep in rc.rank_positions(len(split), dist):
        gen = rc.generator(config.train.seed, 0xE7A1, k)
        loss = _instance_loss(split, k, config, gen, sigmas, ones, config.train.eval_timesteps)
        total += torch.tensor([float(loss), 1.0], dtype=torch.float64) * keep
    if dist.world > 1:
        total = dist.accelerator.reduce(total.to(dist.device), reduction="sum").cpu()
    return float(total[0] / total[1])


def train(config: SFTConfig, *, resume: str | None = None) -> SFTResult:
    """Run Stage I with ``config`` (see the module docstring); ``resume="latest"`` continues."""
    rc.import_modules(config.extra_imports)
    dist = rc.init_distributed()
    t, log, d = config.train, config.log, config.data
    out = Path(log.output_dir)
    resume_from = rc.resolve_resume(out / "checkpoints", resume)

    # -- model, optimizer, data, timestep grid ------------------------------------------------------
    backbone = rc.load_model(config.model, dist, seed=t.seed)
    params = backbone.adapter_parameters()
    optimizer, scheduler = rc.make_optimizer(params, config.optim)
    train_split = EncodedSplit.load(backbone, d, d.train, d.limit, negative_prompt=None)
    heldout = EncodedSplit.load(backbone, d, d.eval, d.eval_limit, negative_prompt=None) if d.eval else None
    sigmas = training_sigmas(
        t.timestep_mu, shift_terminal=t.timestep_shift_terminal, num_train_timesteps=t.num_train_timesteps
    )
    weights = bell_timestep_weights(sigmas) if t.weighting == "bell" else torch.ones_like(sigmas)
    # One micro-batch takes batch_size instances per process; an optimizer step takes GA of them;
    # the epoch's remainder is dropped so that every step is complete.
    per_micro, ga = dist.world * t.batch_size, accumulation_steps(t, dist.world)
    micro_per_epoch = len(train_split) // (per_micro * ga) * ga
    if micro_per_epoch == 0:
        raise ConfigError(
            f"{len(train_split)} training instances are fewer than one optimizer step needs ({dist.world} "
            f"processes × train.batch_size {t.batch_size} × {ga} accumulated micro-batches)"
        )
    # The run is the same on any number of processes that keeps the instances per step.
    fingerprint = config_fingerprint(config, ignore=_RESUMABLE) + f"-step{per_micro * ga}"

    # -- state, or resume ---------------------------------------------------------------------------
    epoch, micro, step, history = 0, 0, 0, []
    if resume_from is not None:
        state = load_checkpoint(resume_from, fingerprint=fingerprint)
        with torch.no_grad():
            for p, saved in zip(params, state["adapter"], strict=True):
                p.copy_(saved)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        epoch, step, history = state["epoch"], state["step"], state["history"]
        # Saved at an optimizer step, so the instances consumed split into this run's micro-batches.
        micro = int(state["instances"]) // per_micro
        print(f"[sft] resumed from {resume_from} (epoch {epoch}, micro-batch {micro}, step {step})")

    def checkpoint() -> None:
        if dist.is_main:
            state = {
                "adapter": list(params),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": capture_rng_state(),
                "epoch": epoch,
                "instances": micro * per_micro,  # of this epoch; independent of the process count
                "step": step,
                "history": history,
            }
            save_checkpoint(out / "checkpoints", step, state, fingerprint=fingerprint, keep=log.keep)
        dist.barrier()

    logger = MetricLogger.for_run(dist, log, config, "sft")
    if heldout is not None and not history:
        history.append({"epoch": 0, "step": 0, "heldout/loss": heldout_loss(heldout, config, dist, sigmas)})
        logger.log(0, history[-1], header="before training")

    # -- the loop -----------------------------------------------------------------------------------
    recent, started = Stats(), time.perf_counter()
    while epoch < t.epochs:
        order = rc.data_order(len(train_split), t.seed, epoch)
        show = log.progress and dist.is_main
        bar = tqdm(total=micro_per_epoch, initial=micro, desc=f"sft epoch {epoch}", disable=not show)
        epoch_stats = Stats()
        while micro < micro_per_epoch:
            # This process's instances of the global micro-batch; each has its own seeded draw.
            first = micro * per_micro + dist.rank * t.batch_size
            for q in range(first, first + t.batch_size):
                loss = _instance_loss(
                    train_split,
                    order[q],
                    config,
                    rc.generator(t.seed, epoch, q),
                    sigmas,
                    weights,
                    t.timesteps_per_instance,
                )
                torch.autograd.backward(loss / (t.batch_size * ga))
                recent.add(loss=loss.detach())
                epoch_stats.add(loss=loss.detach())
            micro += 1
            bar.update(1)
            if micro % ga:
                continue
            recent.add(
                grad_norm=rc.clip_and_step(dist, params, optimizer, scheduler, config.optim.max_grad_norm)
            )
            step += 1
            if step % log.log_every == 0:
                elapsed, means = time.perf_counter() - started, recent.means(dist)
                metrics: dict[str, float] = {
                    "train/loss": means["loss"],
                    "grad_norm": means["grad_norm"],
                    "lr": float(scheduler.get_last_lr()[0]),
                    "samples_per_s": len(recent.values["loss"]) * dist.world / elapsed,
                }
                logger.log(step, metrics, header=f"step {step}")
                recent, started = Stats(), time.perf_counter()
            if step % log.save_every == 0 and micro < micro_per_epoch:
                checkpoint()
        bar.close()
        epoch, micro = epoch + 1, 0
        record = {"epoch": float(epoch), "step": float(step), "train/loss": epoch_stats.means(dist)["loss"]}
        if heldout is not None:
            record["heldout/loss"] = heldout_loss(heldout, config, dist, sigmas)
        history.append(record)
        logger.log(step, record, header=f"epoch {epoch}/{t.epochs}")
        checkpoint()

    # -- outputs: the adapter (Stage II reads it), its exports, the loss curve -----------------------
    result = SFTResult(history=history)
    if dist.is_main:
        result.adapter_dir = backbone.save_adapter(out / "adapter")
        result.export = export_lora(backbone, out / "export")
        if log.plot:
            curves = ["train/loss", "heldout/loss"]
            plot_history(history, curves, out / "loss_curve.png", x="epoch", title="SFT flow-matching loss")
        print(
            f"[sft] adapter: {result.adapter_dir}; exports: {result.export.diffusers_file.parent}, "
            f"{result.export.peft_dir}"
        )
    logger.close()
    dist.barrier()
    return result


if __name__ == "__main__":
    from rewardkit.cli import main

    raise SystemExit(main(["sft", *sys.argv[1:]]))
