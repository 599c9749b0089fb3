"""One Flow-GRPO epoch written with rewardkit's core: what ``scripts/train_sd3.py`` does, by hand.

A tiny velocity model (a conditioned MLP standing in for SD3's transformer) is sampled with the
Flow-SDE on SD3's shifted schedule, scored with a toy reward, and updated once with per-prompt
advantages, the clipped policy loss and the x-based KL against the frozen reference model —
every piece of math a rewardkit call (see docs/porting.md for the line-by-line mapping):

* the schedule: ``sd3_sigmas`` (or ``sigmas_from_scheduler(pipe.scheduler)``);
* the SDE: one ``SDEConfig.flow_grpo()`` for the rollout and the training forward;
* groups and ranks: ``group_ids(prompts)`` and ``gather_samples(..., order=...)``, so N
  processes compute exactly the advantages of one;
* advantages: ``group_advantages(..., std_floor=1e-4, std_floor_mode="add")`` (Flow-GRPO's
  ``(r − mean) / (std + 1e-4)``);
* the loss: ``clipped_policy_loss`` and ``kl_x_based(new, ref)``.

Runs on a CPU in seconds, alone or on several processes:

    python examples/flow_grpo_dropin.py
    torchrun --nproc-per-node 2 examples/flow_grpo_dropin.py      # gloo on CPU

``--out FILE`` saves this rank's advantages, log-probs, losses and the updated weights
(``{rank}`` in FILE is replaced by the rank; the tests compare 1 and 2 processes).
"""

import argparse
import copy
import os

import torch
import torch.distributed as dist
from torch import nn

import rewardkit
from rewardkit.training import gather_samples

PROMPTS = ["a red circle", "a blue square", "a green star", "a yellow moon"]


class TinyVelocity(nn.Module):
    """v_θ(x, σ, prompt): an MLP on the latent, the noise level and a prompt embedding."""

    def __init__(self, dim: int, prompts: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(prompts, 16)
        self.net = nn.Sequential(nn.Linear(dim + 17, 64), nn.SiLU(), nn.Linear(64, dim))

    def forward(self, x: torch.Tensor, sigma: float, prompt: torch.Tensor) -> torch.Tensor:
        s = torch.full((x.shape[0], 1), sigma, dtype=x.dtype)
        return self.net(torch.cat([x, s, self.embed(prompt)], dim=1))


def toy_reward(x0: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
    """Closeness of the sample to a prompt-specific target point (higher is better)."""
    targets = torch.linspace(-1, 1, len(PROMPTS))[prompt, None]
    return -(x0 - targets).square().mean(dim=1)


def main(argv: list[str] | None = None) -> dict[str, torch.Tensor]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--group-size", type=int, default=6, help="images per prompt (Flow-GRPO: 24)")
    parser.add_argument("--steps", type=int, default=10, help="sampling steps")
    parser.add_argument("--dim", type=int, default=8, help="latent size of the toy model")
    parser.add_argument("--beta", type=float, default=0.04, help="KL coefficient")
    parser.add_argument(
        "--out",
        default=None,
        help="save this rank's tensors here (torch.save); '{rank}' is replaced by the rank",
    )
    args = parser.parse_args(argv)
    if args.group_size < 2 or args.steps < 2 or args.dim < 1:
        parser.error("--group-size and --steps must be >= 2 (a group needs two samples), --dim >= 1")

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)

    torch.manual_seed(0)  # the same weights on every rank
    model = TinyVelocity(args.dim, len(PROMPTS))
    reference = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sigmas = rewardkit.sd3_sigmas(args.steps)  # what FlowMatchEulerDiscreteScheduler(shift=3) gives
    # Flow-SDE at noise level 0.7 for both calls below; σ_1 stands in for σ = 1 at the first step
    sde = rewardkit.SDEConfig.flow_grpo(sigma_max=float(sigmas[1]))

    # ---- the epoch's samples: every rank takes every world-th one (a distributed sampler)
    samples = [(p, k) for p in range(len(PROMPTS)) for k in range(args.group_size)]
    mine = list(range(rank, len(samples), world))
    prompt = torch.tensor([samples[i][0] for i in mine])
    texts = [PROMPTS[samples[i][0]] for i in mine]
    # Noise drawn per sample, not per rank, so a sample is the same whichever rank draws it.
    noise = torch.stack(
        [
            torch.randn(args.steps + 1, args.dim, generator=torch.Generator().manual_seed(1000 + i))
            for i in mine
        ]
    )

    # ---- rollout: sample with the SDE, record every step (Flow-GRPO's `pipeline_with_logprob`)
    x = noise[:, 0]
    latents, log_probs = [x], []
    with torch.no_grad():
        for i in range(args.steps):
            s, s_next = float(sigmas[i]), float(sigmas[i + 1])
            v = model(x, s, prompt)
            step = sde.step(x=x, velocity=v, sigma=s, sigma_next=s_next, noise=noise[:, i + 1])
            x = step.next
            latents.append(x)
            log_probs.append(step.log_prob)
    rewards = toy_reward(x, prompt)

    # ---- advantages over the whole batch of all ranks, in the single-process order
    batch = gather_samples({"rewards": rewards}, strings=texts, order=torch.tensor(mine))
    groups = rewardkit.group_ids(batch.strings)  # the same id for a prompt on every rank and run
    advantages = rewardkit.group_advantages(
        batch.tensors["rewards"], groups, std_floor=1e-4, std_floor_mode="add"
    )
    local_advantages = batch.local(advantages)

    # ---- one pass over the recorded steps: ratio, clipped loss, KL (Flow-GRPO's train loop:
    # gradients accumulated over the timesteps, one optimizer step, so every ratio is 1)
    optimizer.zero_grad()
    losses = []
    train_steps = args.steps - 1  # the last step (σ' = 0) is deterministic; Flow-GRPO skips it too
    for i in range(train_steps):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        x_i, x_next = latents[i], latents[i + 1]
        new = sde.log_prob(x_next=x_next, x=x_i, velocity=model(x_i, s, prompt), sigma=s, sigma_next=s_next)
        with torch.no_grad():
            ref = sde.log_prob(
                x_next=x_next, x=x_i, velocity=reference(x_i, s, prompt), sigma=s, sigma_next=s_next
            )
        policy_loss, stats = rewardkit.clipped_policy_loss(new.log_prob, log_probs[i], local_advantages)
        loss = policy_loss + args.beta * rewardkit.kl_x_based(new, ref).mean()
        (loss / train_steps).backward()
        losses.append(loss.detach())
    if distributed:  # average the gradients like DDP does
        for p in model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= world
    optimizer.step()

    result = {
        "advantages": local_advantages,
        "all_advantages": advantages,
        "sample_index": torch.tensor(mine),
        "first_log_prob": log_probs[0],
        "losses": torch.stack(losses),
        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }
    if rank == 0:
        print(
            f"{world} process(es): mean reward {float(batch.tensors['rewards'].mean()):.4f}, "
            f"advantage std {float(advantages.std()):.3f}, clip fraction {float(stats.clip_frac):.3f} "
            f"(Flow-GRPO's clipfrac {float(stats.ratio_outside_frac):.3f})"
        )
    if args.out:
        torch.save(result, args.out.format(rank=rank))
    if distributed:
        dist.destroy_process_group()
    return result


if __name__ == "__main__":
    main()
