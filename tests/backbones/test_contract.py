"""One contract for every shipped backbone, on its tiny checkpoint: conditioning, rollout →
training forward round trips, LoRA, precision, and input errors."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import rewardkit
from rewardkit.backbone import Backbone, rollout, step_log_prob
from rewardkit.core.schedules import sde_window
from tests.backbones.conftest import BACKBONES, rgb

pytestmark = pytest.mark.parametrize("name", BACKBONES)


def ragged_refs(n: int) -> list[Any]:
    """n references of different sizes (all ≥ 64 px, the strictest minimum)."""
    return [rgb(64 + 8 * (j % 3), 64 + 16 * ((j + 1) % 2), seed=10 + j) for j in range(n)]


def with_trained_adapter(bb: Any, rank: int = 2) -> None:
    """Attach a LoRA adapter and move B off zero, so the adapter changes the output."""
    bb.add_adapter(rank=rank)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for n, p in bb.transformer.named_parameters():
            if "lora_B" in n:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))


def test_loads_as_a_backbone(name: str, load: Callable[..., Any]) -> None:
    bb = load(name)
    assert isinstance(bb, Backbone) and bb.name == name
    assert bb.device == torch.device("cpu")
    assert all(not p.requires_grad for p in bb.transformer.parameters())


def test_text_encoder_placed_by_option_encodes_the_same(name: str, load: Callable[..., Any]) -> None:
    # text_encoder_device keeps a large text encoder elsewhere (CPU next to a GPU transformer);
    # the embeddings come back on the transformer's device, unchanged.
    refs = ragged_refs(2)
    placed = load(name, text_encoder_device="cpu")
    assert next(placed.pipe.text_encoder.parameters()).device == torch.device("cpu")
    (a,) = placed.encode_condition(["two"], [refs], height=32, width=32, negative_prompt="")
    (b,) = load(name).encode_condition(["two"], [refs], height=32, width=32, negative_prompt="")
    assert a.prompt_embeds.device == placed.device
    assert torch.equal(a.prompt_embeds, b.prompt_embeds)
    assert torch.equal(a.negative_prompt_embeds, b.negative_prompt_embeds)


def test_deferred_transformer_placement_moves_everything_but_the_transformer(
    name: str, load: Callable[..., Any]
) -> None:
    # Under FSDP the recipes shard the transformer onto the device block by block; the rest of
    # the pipeline goes to the device at load ("meta" here: nothing is computed at load).
    bb = load(name, device="meta", defer_transformer_placement=True)
    assert {p.device.type for p in bb.transformer.parameters()} == {"cpu"}
    for component in (bb.vae, bb.pipe.text_encoder):
        assert {p.device.type for p in component.parameters()} == {"meta"}
    assert bb.device == torch.device("meta")


def test_condition_layout(name: str, load: Callable[..., Any]) -> None:
    bb = load(name)
    refs = ragged_refs(3)
    (c,) = bb.encode_condition(["put them together"], [refs], height=48, width=64)
    assert (c.height, c.width) == (48, 64) and c.num_references == 3
    m = bb.multiple_of
    assert c.image_seq_len == (48 // m) * (64 // m)
    ref_tokens = sum((h // m) * (w // m) for h, w in c.reference_sizes)
    assert c.reference_latents.shape[:2] == (1, ref_tokens)
    assert c.reference_latents.dtype == torch.float32 and c.prompt_embeds.shape[0] == 1
    assert not c.has_negative


def test_pack_unpack_and_vae_round_trip(name: str, load: Callable[..., Any]) -> None:
    bb = load(name)
    z = torch.randn(
        2,
        bb.pack_latents(torch.zeros(1, bb.transformer.config.in_channels // 4, 12, 16)).shape[-1] // 4,
        12,
        16,
    )
    height, width = 12 * bb.vae_scale_factor, 16 * bb.vae_scale_factor
    tokens = bb.pack_latents(z)
    assert tokens.shape == (2, 6 * 8, z.shape[1] * 4)
    assert torch.equal(bb.unpack_latents(tokens, height, width), z)
    images = torch.rand(2, 3, height, width)
    with torch.no_grad():
        latents = bb.encode_images(images)
        decoded = bb.decode_latents(latents, height, width)
    assert latents.shape == tokens.shape
    assert decoded.shape == images.shape and decoded.dtype == torch.float32
    assert float(decoded.min()) >= 0.0 and float(decoded.max()) <= 1.0


def test_sigmas_follow_the_target_size(name: str, load: Callable[..., Any]) -> None:
    bb = load(name)
    small, large = bb.sigmas(6, 32, 32), bb.sigmas(6, 128, 128)
    assert small.shape == (7,) and small.dtype == torch.float64
    assert float(small[0]) == 1.0 and float(small[-1]) == 0.0
    assert bool((small[1:] < small[:-1]).all())
    assert bool((large[1:-2] > small[1:-2]).all())  # more tokens, larger shift (before any terminal stretch)


def test_reference_order_matters(name: str, load: Callable[..., Any]) -> None:
    bb = load(name)
    a, b = rgb(64, 80, seed=1), rgb(72, 64, seed=2)
    c_ab, c_ba, c_ab2 = bb.encode_condition(["swap"] * 3, [[a, b], [b, a], [a, b]], height=64, width=64)
    x = bb.initial_latents(2, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        v_ab, v_ba, v_ab2 = (bb.velocity(x, 0.7, c) for c in (c_ab, c_ba, c_ab2))
    assert torch.equal(v_ab, v_ab2)
    assert float((v_ab - v_ba).abs().max()) > 1e-4


@pytest.mark.slow
def test_round_trip_for_one_to_seven_references(name: str, load: Callable[..., Any]) -> None:
    bb = load(name)
    with_trained_adapter(bb)
    params = bb.adapter_parameters()
    for n in range(1, 8):
        (cond,) = bb.encode_condition([f"compose {n} things"], [ragged_refs(n)])
        assert cond.num_references == n
        window = sde_window(3, epoch=n, train_steps=[0, 1], num_train_steps=2)
        out = rollout(
            bb, cond, group_size=2, num_steps=3, generator=torch.Generator().manual_seed(n), sde_steps=window
        )
        assert out.images is not None and out.images.shape == (2, 3, cond.height, cond.width)
        assert bool(torch.isfinite(out.images).all())
        traj = out.trajectory
        assert traj.latents.shape == (2, 2, cond.image_seq_len, traj.latents.shape[-1])
        for p in params:
            p.grad = None
        for k, step in enumerate(traj.step_indices):
            new = step_log_prob(bb, traj, step)
            ratio = torch.exp(new.log_prob - traj.log_probs[:, k])
            torch.testing.assert_close(ratio, torch.ones(2), rtol=0, atol=1e-5)
            (-(ratio * torch.tensor([1.0, -0.5])).mean()).backward()
        assert sum(float(p.grad.abs().sum()) for p in params if p.grad is not None) > 0


def test_ragged_references_batch_within_a_group(name: str, load: Callable[..., Any]) -> None:
    bb = load(name)
    c1, c2 = bb.encode_condition(["one", "two"], [ragged_refs(1), ragged_refs(3)], height=32, width=32)
    assert c1.reference_latents.shape[1] != c2.reference_latents.shape[1]
    for cond in (c1, c2):
        out = rollout(
            bb, cond, group_size=3, num_steps=2, generator=torch.Generator().manual_seed(0), decode=False
        )
        assert out.final_latents.shape[:2] == (3, cond.image_seq_len)


def test_per_sample_generators_split_a_group_like_ranks_do(name: str, load: Callable[..., Any]) -> None:
    """A group rolled out in parts (as on several ranks) with per-sample generators is the group."""
    bb = load(name)
    (cond,) = bb.encode_condition(["split me"], [ragged_refs(2)], height=32, width=32)

    def part(seeds: list[int]) -> Any:
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        return rollout(bb, cond, group_size=len(seeds), num_steps=3, generator=gens, sde_steps=[1],
                       micro_batch=1, decode=False)  # fmt: skip

    whole, first, rest = part([3, 4, 5]), part([3]), part([4, 5])
    torch.testing.assert_close(torch.cat([first.final_latents, rest.final_latents]), whole.final_latents)
    torch.testing.assert_close(
        torch.cat([first.trajectory.log_probs, rest.trajectory.log_probs]), whole.trajectory.log_probs
    )
    assert not torch.allclose(whole.final_latents[0], whole.final_latents[1])


def test_lora_gradients_reach_only_the_adapter(name: str, load: Callable[..., Any]) -> None:
    bb = load(name, autocast_dtype="bfloat16")
    with_trained_adapter(bb)
    (cond,) = bb.encode_condition(["grad"], [ragged_refs(2)], height=32, width=32)
    out = rollout(
        bb, cond, group_size=2, num_steps=3, generator=torch.Generator().manual_seed(0), sde_steps=[1]
    )
    new = step_log_prob(bb, out.trajectory, 1)
    # bf16 autocast in both rollout and training: the recomputed log-prob is the stored one.
    torch.testing.assert_close(new.log_prob, out.trajectory.log_probs[:, 0], rtol=0, atol=1e-6)
    new.log_prob.sum().backward()
    lora = {id(p) for p in bb.adapter_parameters()}
    assert lora and all(p.dtype == torch.float32 and p.requires_grad for p in bb.adapter_parameters())
    with_grad = [p for p in bb.transformer.parameters() if p.grad is not None]
    # Every gradient is on a float32 LoRA weight; the frozen base gets none. (A few LoRA weights
    # can be off the output's path, e.g. the last dual-stream block's text-stream projection.)
    assert with_grad and all(id(p) in lora and p.grad.dtype == torch.float32 for p in with_grad)
    assert len(with_grad) >= len(lora) // 2
    assert all(not p.requires_grad for n, p in bb.transformer.named_parameters() if "lora_" not in n)
    for module in (bb.vae, bb.pipe.text_encoder):
        assert all(p.grad is None for p in module.parameters())


def test_adapter_on_off_and_save_load(name: str, load: Callable[..., Any], tmp_path: Path) -> None:
    base, bb = load(name), load(name)
    with_trained_adapter(bb)
    (cond,) = bb.encode_condition(["lora"], [ragged_refs(2)], height=32, width=32)
    x = bb.initial_latents(2, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        v_lora, v_ref, v_base = (
            bb.velocity(x, 0.6, cond),
            bb.velocity(x, 0.6, cond, adapter=False),
            base.velocity(x, 0.6, cond),
        )
    assert torch.equal(v_ref, v_base)  # the KL reference is the frozen base
    assert float((v_lora - v_base).abs().max()) > 1e-4
    saved = bb.save_adapter(tmp_path / "adapter")
    fresh = load(name, adapter=str(saved))
    with torch.no_grad():
        torch.testing.assert_close(fresh.velocity(x, 0.6, cond), v_lora)
    base.add_adapter(rank=3)
    base.load_adapter(saved)  # replaces the existing adapter
    with torch.no_grad():
        torch.testing.assert_close(base.velocity(x, 0.6, cond), v_lora)
    with pytest.raises(ValueError, match="already has a LoRA adapter"):
        base.add_adapter(rank=2)
    with pytest.raises(FileNotFoundError, match="no adapter"):
        base.load_adapter(tmp_path)


def test_gradient_checkpointing_gives_the_same_gradients(name: str, load: Callable[..., Any]) -> None:
    bb = load(name)
    with_trained_adapter(bb)
    (cond,) = bb.encode_condition(["ckpt"], [ragged_refs(1)], height=32, width=32)
    traj = rollout(
        bb, cond, group_size=2, num_steps=2, generator=torch.Generator().manual_seed(0), sde_steps=[1]
    ).trajectory
    grads = []
    for enabled in (False, True):
        bb.set_gradient_checkpointing(enabled)
        for p in bb.adapter_parameters():
            p.grad = None
        step_log_prob(bb, traj, 1).log_prob.sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in bb.adapter_parameters() if p.grad is not None]))
    assert bb.transformer.gradient_checkpointing
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_guidance_changes_the_velocity(name: str, load: Callable[..., Any]) -> None:
    bb = load(name)
    (cond,) = bb.encode_condition(["cfg"], [ragged_refs(1)], height=32, width=32, negative_prompt=" ")
    assert cond.has_negative
    x = bb.initial_latents(1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        v1, v4 = bb.velocity(x, 0.8, cond), bb.velocity(x, 0.8, cond, guidance_scale=4.0)
    assert float((v1 - v4).abs().max()) > 1e-4


def test_per_sample_sigma_matches_one_call_per_sample(name: str, load: Callable[..., Any]) -> None:
    bb = load(name)
    with_trained_adapter(bb)
    (cond,) = bb.encode_condition(["noise levels"], [ragged_refs(2)], height=32, width=32)
    x = bb.initial_latents(3, 32, 32, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.9, 0.4, 0.05])
    with torch.no_grad():
        batched = bb.velocity(x, sigma, cond)
        looped = torch.cat([bb.velocity(x[i : i + 1], float(sigma[i]), cond) for i in range(3)])
        shared = bb.velocity(x, torch.tensor(0.4), cond)
    torch.testing.assert_close(batched, looped, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(shared[1], batched[1], rtol=1e-4, atol=1e-5)
    assert float((batched[0] - shared[0]).abs().max()) > 1e-4  # σ reaches the transformer
    with pytest.raises(ValueError, match=r"sigma must be a float or a \(B,\) tensor with B=3"):
        bb.velocity(x, torch.tensor([0.5, 0.5]), cond)
    with pytest.raises(ValueError, match=r"sigma must lie in \[0, 1\]"):
        bb.velocity(x, torch.tensor([0.5, float("nan"), 0.5]), cond)
    for bad in (1.5, float("nan"), -0.1):  # one σ for the batch is checked too
        with pytest.raises(ValueError, match=r"sigma must lie in \[0, 1\]"):
            bb.velocity(x, bad, cond)


@pytest.mark.parametrize("scheme", ["offset", "diagonal"])
def test_position_schemes_run_and_move_the_references(
    name: str, scheme: str, load: Callable[..., Any]
) -> None:
    index, other = load(name), load(name, position_scheme=scheme)
    refs = ragged_refs(2)
    (c_index,) = index.encode_condition(["scheme"], [refs], height=32, width=32)
    (c_other,) = other.encode_condition(["scheme"], [refs], height=32, width=32)
    torch.testing.assert_close(c_index.reference_latents, c_other.reference_latents)
    x = index.initial_latents(1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        v_index, v_other = index.velocity(x, 0.5, c_index), other.velocity(x, 0.5, c_other)
    assert bool(torch.isfinite(v_other).all())
    assert float((v_index - v_other).abs().max()) > 1e-5


def test_bad_inputs_are_refused_clearly(name: str, load: Callable[..., Any]) -> None:
    bb = load(name)
    good = rgb(64, 64)
    with pytest.raises(ValueError, match="at least one reference"):
        bb.encode_condition(["x"], [[]])
    with pytest.raises(ValueError, match=r"mode 'L'.*convert"):
        bb.encode_condition(["x"], [[good, good.convert("L")]])
    with pytest.raises(ValueError, match="mode 'RGBA'"):
        bb.encode_condition(["x"], [[good.convert("RGBA")]])
    with pytest.raises(ValueError, match="too small: 8×64"):
        bb.encode_condition(["x"], [[rgb(64, 8)]])
    with pytest.raises(TypeError, match=r"PIL\.Image\.Image"):
        bb.encode_condition(["x"], [[torch.zeros(3, 64, 64)]])
    with pytest.raises(TypeError, match="single image"):
        bb.encode_condition(["x"], [good])
    with pytest.raises(TypeError, match="sequence of strings"):
        bb.encode_condition("x", [[good]])
    with pytest.raises(ValueError, match="2 prompts but 1 reference lists"):
        bb.encode_condition(["x", "y"], [[good]])
    with pytest.raises(ValueError, match="both height and width"):
        bb.encode_condition(["x"], [[good]], height=64)
    (cond,) = bb.encode_condition(["x"], [[good]], height=32, width=32)
    with pytest.raises(ValueError, match="latents must be"):
        bb.velocity(torch.zeros(1, 5, 4), 0.5, cond)
    with pytest.raises(ValueError, match="negative_prompt"):
        bb.velocity(bb.initial_latents(1, 32, 32, generator=None), 0.5, cond, guidance_scale=3.0)


def test_registry_round_trip_from_a_fresh_directory(name: str, tmp_path: Path) -> None:
    path = rewardkit.make_tiny_checkpoint(name, tmp_path / "ck")
    bb = rewardkit.load_backbone(name, path, device="cpu", resolution=32)
    (cond,) = bb.encode_condition(["default size"], [[rgb(64, 64)]])
    assert (cond.height, cond.width) == (32, 32)
