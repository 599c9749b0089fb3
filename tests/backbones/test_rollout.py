"""The generic rollout loop and training forward, on a toy linear backbone (no diffusers)."""

from pathlib import Path

import pytest
import torch
from torch import Tensor

from rewardkit.backbone import Backbone, Condition, Trajectory, rollout, step_log_prob
from rewardkit.core.schedules import exponential_shift_sigmas, sde_window
from rewardkit.core.sde import sde_coefficients

L, D = 6, 4


class ToyBackbone:
    """v = tanh(W x + b·σ + c_ref), with a learnable W; a condition adds a reference bias."""

    name = "toy"
    lora_target_modules = ("w",)

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(1)
        self.w = torch.nn.Parameter(0.3 * torch.randn(D, D, generator=g))
        self.transformer = torch.nn.ParameterDict({"w": self.w})
        self.b = torch.randn(D, generator=g)
        self.calls: list[int] = []

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def encode_condition(self, prompts, references, *, height=None, width=None, negative_prompt=None):
        return [toy_condition(negative=negative_prompt is not None) for _ in prompts]

    def sigmas(self, num_steps: int, height: int, width: int) -> Tensor:
        return exponential_shift_sigmas(num_steps, 0.5)

    def initial_latents(self, batch_size, height, width, *, generator):
        return torch.randn(batch_size, L, D, generator=generator)

    def velocity(self, latents, sigma, condition, *, guidance_scale=1.0, adapter=True):
        self.calls.append(latents.shape[0])
        w = self.w if adapter else self.w.detach() * 0
        ref = condition.reference_latents.mean(1, keepdim=True)
        v = torch.tanh(latents @ w + self.b * sigma + ref)
        if guidance_scale > 1:
            v = v + (guidance_scale - 1) * 0.1
        return v.float()

    def pack_latents(self, latents):
        return latents.flatten(2).transpose(1, 2)

    def unpack_latents(self, tokens, height, width):
        return tokens.transpose(1, 2).reshape(tokens.shape[0], D, 2, 3)

    def encode_images(self, images):
        return images.mean(1).reshape(images.shape[0], L, -1)[..., :D]

    def decode_latents(self, tokens, height, width):
        return torch.sigmoid(tokens[:, :, :3].transpose(1, 2).reshape(tokens.shape[0], 3, 2, 3))

    def add_adapter(self, *, rank, alpha=None, target_modules=None):
        pass

    def adapter_parameters(self):
        return [self.w]

    def save_adapter(self, directory) -> Path:
        return Path(directory)

    def load_adapter(self, directory) -> None:
        pass

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        pass


def toy_condition(negative: bool = False) -> Condition:
    embeds = torch.zeros(1, 3, 5)
    return Condition(
        prompt="p",
        height=2,
        width=3,
        image_seq_len=L,
        reference_sizes=((2, 3),),
        prompt_embeds=embeds,
        prompt_mask=None,
        reference_latents=torch.linspace(-1, 1, 2 * D).reshape(1, 2, D),
        negative_prompt_embeds=embeds if negative else None,
    )


def test_toy_satisfies_the_protocol() -> None:
    assert isinstance(ToyBackbone(), Backbone)
    assert not isinstance(object(), Backbone)


def test_rollout_records_only_window_steps() -> None:
    bb = ToyBackbone()
    out = rollout(
        bb,
        toy_condition(),
        group_size=3,
        num_steps=5,
        generator=torch.Generator().manual_seed(0),
        sde_steps=[3, 1],
    )
    traj = out.trajectory
    assert traj.step_indices == (1, 3)
    assert traj.latents.shape == traj.next_latents.shape == (3, 2, L, D)
    assert traj.latents.dtype == traj.next_latents.dtype == torch.float32
    assert traj.log_probs.shape == (3, 2)
    assert out.images is not None and out.images.shape == (3, 3, 2, 3)
    assert bb.calls == [3] * 5  # the whole group in one call per step


def test_deterministic_steps_are_euler_and_window_steps_are_stochastic() -> None:
    bb, cond = ToyBackbone(), toy_condition()
    x0 = torch.randn(2, L, D, generator=torch.Generator().manual_seed(3))
    ode = rollout(bb, cond, group_size=2, num_steps=4, generator=torch.Generator(), latents=x0, decode=False)
    # Hand-rolled Euler loop x_{i+1} = x_i + v (σ_{i+1} − σ_i).
    sigmas, x = bb.sigmas(4, 2, 3), x0.clone()
    for i in range(4):
        x = x + bb.velocity(x, float(sigmas[i]), cond) * float(sigmas[i + 1] - sigmas[i])
    torch.testing.assert_close(ode.final_latents, x)
    assert ode.trajectory.step_indices == () and ode.trajectory.latents.shape == (2, 0, L, D)
    sde = rollout(
        bb,
        cond,
        group_size=2,
        num_steps=4,
        generator=torch.Generator().manual_seed(0),
        latents=x0,
        sde_steps=[2],
    )
    assert not torch.allclose(sde.final_latents, ode.final_latents)


def test_recorded_transition_follows_the_sde_mean_and_std() -> None:
    bb, cond = ToyBackbone(), toy_condition()
    out = rollout(
        bb, cond, group_size=64, num_steps=4, generator=torch.Generator().manual_seed(0), sde_steps=[1]
    )
    traj = out.trajectory
    sigma, sigma_next = float(traj.sigmas[1]), float(traj.sigmas[2])
    x, x_next = traj.latents[:, 0], traj.next_latents[:, 0]
    c = sde_coefficients(sigma, sigma_next, noise_level=1.0, sigma_max=float(traj.sigmas[1]))
    with torch.no_grad():
        residual = (x_next - (c.c_x * x + c.c_v * bb.velocity(x, sigma, cond))) / c.std
    assert abs(float(residual.mean())) < 0.05 and abs(float(residual.std()) - 1.0) < 0.05


def test_same_generator_seed_same_rollout() -> None:
    def run(seed: int) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        return rollout(
            ToyBackbone(), toy_condition(), group_size=2, num_steps=3, generator=g, sde_steps=[0, 1]
        ).final_latents

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_micro_batch_gives_the_same_rollout() -> None:
    kwargs = {"group_size": 5, "num_steps": 3, "sde_steps": [0, 1], "decode": False}
    full = rollout(ToyBackbone(), toy_condition(), generator=torch.Generator().manual_seed(0), **kwargs)
    bb = ToyBackbone()
    split = rollout(bb, toy_condition(), generator=torch.Generator().manual_seed(0), micro_batch=2, **kwargs)
    assert bb.calls == [2, 2, 1] * 3
    torch.testing.assert_close(split.final_latents, full.final_latents)
    torch.testing.assert_close(split.trajectory.log_probs, full.trajectory.log_probs)


def test_per_sample_generators_make_a_split_group_equal_the_whole_group() -> None:
    """Sample g draws only from generator g, so the group can be split (e.g. across ranks)."""

    def gens(seeds: list[int]) -> list[torch.Generator]:
        return [torch.Generator().manual_seed(s) for s in seeds]

    kwargs = {"num_steps": 4, "sde_steps": [1, 2], "decode": False}
    whole = rollout(ToyBackbone(), toy_condition(), group_size=4, generator=gens([5, 6, 7, 8]), **kwargs)
    first = rollout(ToyBackbone(), toy_condition(), group_size=1, generator=gens([5]), **kwargs)
    rest = rollout(ToyBackbone(), toy_condition(), group_size=3, generator=gens([6, 7, 8]), **kwargs)
    torch.testing.assert_close(torch.cat([first.final_latents, rest.final_latents]), whole.final_latents)
    torch.testing.assert_close(
        torch.cat([first.trajectory.log_probs, rest.trajectory.log_probs]), whole.trajectory.log_probs
    )
    # One generator per sample of a group of one draws exactly what the shared generator draws.
    shared = rollout(
        ToyBackbone(), toy_condition(), group_size=1, generator=torch.Generator().manual_seed(5), **kwargs
    )
    assert torch.equal(shared.final_latents, first.final_latents)
    # Different per-sample seeds give different samples.
    assert not torch.allclose(whole.final_latents[0], whole.final_latents[1])
    with pytest.raises(ValueError, match="per-sample generators"):
        rollout(ToyBackbone(), toy_condition(), group_size=2, generator=gens([1]), **kwargs)


@pytest.mark.parametrize("kind", ["flow_sde", "dance_sde", "cps"])
def test_ratio_is_one_before_any_update(kind: str) -> None:
    bb = ToyBackbone()
    window = sde_window(6, epoch=0, train_steps=[0, 2, 4], num_train_steps=3)
    noise = 0.7 if kind == "cps" else 1.0
    out = rollout(
        bb, toy_condition(), group_size=4, num_steps=6, generator=torch.Generator().manual_seed(0),
        sde_steps=window, kind=kind, noise_level=noise,
    )  # fmt: skip
    for k, step in enumerate(out.trajectory.step_indices):
        new = step_log_prob(bb, out.trajectory, step)
        assert torch.equal(new.log_prob, out.trajectory.log_probs[:, k])
        new.log_prob.sum().backward()
    assert bb.w.grad is not None and bool(bb.w.grad.abs().sum() > 0)


def test_step_log_prob_on_a_subset_and_without_adapter() -> None:
    bb = ToyBackbone()
    traj = rollout(
        bb,
        toy_condition(),
        group_size=4,
        num_steps=3,
        generator=torch.Generator().manual_seed(0),
        sde_steps=[1],
    ).trajectory
    sub = step_log_prob(bb, traj, 1, samples=[2, 0])
    torch.testing.assert_close(sub.log_prob, traj.log_probs[[2, 0], 0])
    assert step_log_prob(bb, traj, 1, samples=slice(1, 3)).log_prob.shape == (2,)
    with torch.no_grad():
        ref = step_log_prob(bb, traj, 1, adapter=False)
    assert not torch.allclose(ref.velocity, step_log_prob(bb, traj, 1).velocity)


def test_guidance_is_stored_and_reused() -> None:
    bb, cond = ToyBackbone(), toy_condition(negative=True)
    traj = rollout(
        bb,
        cond,
        group_size=2,
        num_steps=3,
        generator=torch.Generator().manual_seed(0),
        sde_steps=[1],
        guidance_scale=3.0,
    ).trajectory
    assert traj.guidance_scale == 3.0
    assert torch.equal(step_log_prob(bb, traj, 1).log_prob, traj.log_probs[:, 0])


def test_trajectory_to_keeps_values() -> None:
    traj = rollout(
        ToyBackbone(),
        toy_condition(),
        group_size=2,
        num_steps=3,
        generator=torch.Generator().manual_seed(0),
        sde_steps=[1],
    ).trajectory
    moved = traj.to("cpu")
    assert isinstance(moved, Trajectory) and torch.equal(moved.latents, traj.latents)
    assert moved.group_size == 2 and moved.num_steps == 3 and moved.position(1) == 0


def test_rollout_input_errors() -> None:
    bb, cond, g = ToyBackbone(), toy_condition(), torch.Generator()
    with pytest.raises(ValueError, match="sde_steps"):
        rollout(bb, cond, group_size=1, num_steps=3, generator=g, sde_steps=[3])
    with pytest.raises(ValueError, match="sde_steps"):
        rollout(bb, cond, group_size=1, num_steps=3, generator=g, sde_steps=[1, 1])
    with pytest.raises(ValueError, match="group_size"):
        rollout(bb, cond, group_size=0, num_steps=3, generator=g)
    with pytest.raises(TypeError, match="generator"):
        rollout(bb, cond, group_size=1, num_steps=3, generator=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        rollout(bb, cond, group_size=1, num_steps=3, generator=g, guidance_scale=2.0)
    with pytest.raises(ValueError, match="kind"):
        rollout(bb, cond, group_size=1, num_steps=3, generator=g, kind="euler")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latents"):
        rollout(bb, cond, group_size=2, num_steps=3, generator=g, latents=torch.zeros(3, L, D))
    traj = rollout(bb, cond, group_size=1, num_steps=3, generator=g, sde_steps=[1]).trajectory
    with pytest.raises(ValueError, match="not a trained"):
        step_log_prob(bb, traj, 2)


def test_condition_to_and_properties() -> None:
    cond = toy_condition(negative=True)
    moved = cond.to("cpu")
    assert moved.num_references == 1 and moved.has_negative
    assert torch.equal(moved.reference_latents, cond.reference_latents)
    assert not toy_condition().has_negative
