r"""Create the embedded default backbone of ``examples/dyref_full.py`` (reproducible, CPU).

The default is a *tiny* Qwen-Image-Edit-2511-architecture pipeline (the same diffusers /
transformers classes as the real checkpoint, so every code path is the real one) whose
weights are trained here, briefly, on OmniRef-mini-style scenes:

1. **VAE.** The tiny ``AutoencoderKLQwenImage`` is trained as an autoencoder on rendered
   targets and references (L1 + MSE reconstruction, a small KL term); then the per-channel
   latent mean and std are measured and written into its config (the pipeline normalises
   latents with them, as the real checkpoint does).
2. **Transformer.** A ``QwenImageTransformer2DModel`` is trained from scratch with the
   rectified-flow loss $\lVert v_\theta(x_\sigma, \sigma, c) - (\varepsilon - x_0)\rVert^2$,
   $\sigma \sim \text{logit-normal}(0, 1)$, conditioned on the references exactly as the
   adapter conditions them (reference VAE tokens + the vision-language prompt).

The transformer's pre-training data plays the part of the real base model's training data:
every OmniRef-mini type combination **without a lighting reference**, with 2–7 references.
Relighting a scene like a reference image is what Stage I teaches here (with DyRef's
mixed-type SFT data), so on OmniRef-mini the base model composes but is weak where it never
learned. (The first default was pre-trained on at most three references: it painted colour
blobs, and 5 dB images for 5–7 references; see ``pretraining_log.jsonl``.) The VAE sees every
reference type (it is the image codec, not the composer).

The shipped transformer (6 blocks of width 128, 3.7 M parameters) was made in two phases on
top of the first version's VAE, tokenizer and text encoder (``--reuse-codec``), one core, each
scene noised at 4 levels per step; every 250 steps it is saved and its 10-step ODE samples are
compared with 43 held-out targets (``pretraining_log.jsonl``, mean PSNR overall, for at most
three and for more references, and for the lighting types it never saw)::

    # phase 1 (about 30 min): at most three references, every type
    python examples/make_default_backbone.py --reuse-codec examples/assets/dyref-tiny-qwen \
        --out /tmp/phase1 --categories all --max-refs 3 --scenes 8000 --steps 5000 \
        --stop-after 1250 --accumulate 8 --noise-draws 4 --lr 1.5e-3 --threads 1 --eval-every 250
    # phase 2: 2–7 references, no lighting type (the defaults)
    python examples/make_default_backbone.py --reuse-codec examples/assets/dyref-tiny-qwen \
        --init-transformer /tmp/phase1/transformer --out /tmp/phase2 --scenes 8000 \
        --steps 3000 --accumulate 8 --noise-draws 4 --lr 1.5e-3 --threads 1 --eval-every 250

(``--stop-after`` ends a phase early on the schedule of ``--steps``; ``pretraining.json``
records the phase that made the shipped weights and its last PSNR check.) Phase 1 of the shipped
weights saw OmniRef-mini's earlier lighting reference (a grey room; now a white room under the
same light, so that the lighting metric ranks the ground truth first): re-running phase 1 today
trains on the new one. Phase 2 has no lighting type, and Stage I learns the new reference. Without
``--reuse-codec`` the script first trains the VAE (about 15 minutes).

``--noise-draws k`` noises every scene at k levels in one batched forward (per-sample σ): on
this model k = 4 gives 4× the training samples for under twice the time.

The result is a diffusers pipeline folder (safetensors) that
``rewardkit.load_backbone("qwen-image-edit-2511", path)`` reads.
"""

import argparse
import json
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import rewardkit
from rewardkit.core.flow_matching import flow_matching_loss, noisy_latents
from rewardkit.data.omniref_mini import CATEGORIES, make_instance

logger = logging.getLogger("make_default_backbone")

#: Architecture of the embedded default (about 3.7 M transformer parameters): 6 blocks of width
#: 128 (4 heads of 32). The first default (4 blocks of width 96) painted colour blobs: it did not
#: learn where each reference goes within the pre-training budget.
TRANSFORMER = {
    "patch_size": 2,
    "in_channels": 64,  # 2×2 patches of the 16 latent channels
    "out_channels": 16,
    "num_layers": 6,
    "attention_head_dim": 32,
    "num_attention_heads": 4,
    "joint_attention_dim": 16,
    "guidance_embeds": False,
    "axes_dims_rope": (8, 12, 12),  # frame, row, column; sums to the head dimension
    "zero_cond_t": True,
}
#: 4× down-sampling to 16 latent channels: sharp, colour-true reconstructions after a short training.
VAE = {
    "base_dim": 16,
    "z_dim": 16,
    "dim_mult": [1, 2, 2],
    "num_res_blocks": 1,
    "temperal_downsample": [False, True],
}
#: Load options stored with the checkpoint (``load_backbone`` reads them as defaults).
OPTIONS = {
    "resolution": 64,
    "vae_reference_area": 32 * 32,
    "text_reference_area": 56 * 56,
    "min_reference_side": 16,
    "autocast_dtype": None,
}
MAX_PRETRAIN_REFS = 7
#: Type combinations the base transformer is pre-trained on: every one without a lighting
#: reference, with 2–7 references. Relighting a scene like a reference is what Stage I teaches
#: (a base trained on at most three references painted 5 dB images for 5–7 references, so the
#: reference count is no longer held back).
BASE_CATEGORIES = tuple(c for c in CATEGORIES if "lighting" not in c)
#: Reference counts reported separately by the PSNR check.
FEW_REFS = 3


def pretraining_pairs(
    categories: tuple[str, ...] = BASE_CATEGORIES, max_refs: int = MAX_PRETRAIN_REFS
) -> list[tuple[str, int]]:
    """(category, reference count) pairs of the base transformer's data."""
    unknown = sorted(set(categories) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"unknown categories {unknown}; choose among {list(CATEGORIES)}")
    pairs = [(c, n) for c in categories for n in CATEGORIES[c] if n <= max_refs]
    if not pairs:
        raise ValueError(
            f"no (category, reference count) pair of {list(categories)} has <= {max_refs} references"
        )
    return pairs


def codec_pairs() -> list[tuple[str, int]]:
    """(category, reference count) pairs of the VAE's data: every type, fewest references."""
    return [(c, counts[0]) for c, counts in CATEGORIES.items()]


def prompt_tokenizer(prompts: list[str]) -> Any:
    """A byte-level BPE trained on the edit prompt template and OmniRef-mini's vocabulary.

    Whole words become tokens, so a 7-reference prompt is ~60 tokens instead of ~250 bytes, and
    the template's system prefix is exactly the 64 tokens the pipeline drops (as with the real
    Qwen tokenizer; the byte tokenizer leaves ~270 template bytes in the sequence).
    """
    from diffusers import QwenImageEditPlusPipeline
    from rewardkit_backbones._tokenizer import train_bpe_tokenizer

    # The template and the count of dropped tokens are set in the pipeline's __init__, which
    # needs no components to set them.
    empty = QwenImageEditPlusPipeline(
        scheduler=None, vae=None, text_encoder=None, tokenizer=None, processor=None, transformer=None
    )
    prefix, dropped = empty.prompt_template_encode.split("{}")[0], empty.prompt_template_encode_start_idx
    pictures = "".join(f"Picture {i}: " for i in range(1, 10))
    tokenizer = train_bpe_tokenizer([prefix] * 50 + [pictures] * 50 + prompts)
    kept = len(tokenizer(prefix).input_ids)
    if kept != dropped:
        raise RuntimeError(f"the template prefix encodes to {kept} tokens, the pipeline drops {dropped}")
    return tokenizer


def _instances(count: int, seed: int, size: int, pairs: list[tuple[str, int]]) -> list[Any]:
    return [
        make_instance(*pairs[i % len(pairs)], np.random.default_rng([seed, 7, i]), size=size)
        for i in tqdm(range(count), desc="rendering scenes", unit="scene")
    ]


def _to_pixels(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) in [0, 1] → (3, 1, H, W) in [-1, 1] (the VAE's video layout)."""
    return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(1) * 2 - 1


def train_vae(vae: Any, images: list[np.ndarray], *, steps: int, batch: int, lr: float, seed: int) -> None:
    """Autoencoder training: L1 + MSE reconstruction of a posterior sample, plus 1e-6 · KL."""
    gen = torch.Generator().manual_seed(seed)
    data = torch.stack([_to_pixels(im) for im in images])
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    vae.train().requires_grad_(True)
    bar = tqdm(range(steps), desc="VAE", unit="step")
    for _ in bar:
        x = data[torch.randint(len(data), (batch,), generator=gen)]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        loss = (recon - x).abs().mean() + (recon - x).pow(2).mean() + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    vae.eval().requires_grad_(False)


@torch.no_grad()
def latent_statistics(vae: Any, images: list[np.ndarray]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior modes over ``images``."""
    z = torch.cat([vae.encode(_to_pixels(im)[None]).latent_dist.mode() for im in images])
    dims = [0, 2, 3, 4]
    return z.mean(dims).tolist(), z.std(dims).tolist()


def held_out_instances(count: int, *, seed: int, size: int = 64) -> list[Any]:
    """Scenes of every (category, reference count) pair, cycled, from a stream no split uses."""
    pairs = [(c, n) for c, counts in CATEGORIES.items() for n in counts]
    return [
        make_instance(*pairs[i % len(pairs)], np.random.default_rng([seed, 9, i]), size=size)
        for i in range(count)
    ]


def _pil(image: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(np.round(image * 255).astype(np.uint8))


@torch.no_grad()
def evaluate_psnr(backbone: Any, instances: list[Any], *, num_steps: int = 10) -> dict[str, float]:
    """Mean PSNR (dB) of the ODE samples vs the targets, as the main job samples (seed 1, no CFG).

    Returns the mean over all instances, over those with at most ``FEW_REFS`` references, over
    the rest, and over the categories the base is not pre-trained on.
    """
    from rewardkit.backbone.rollout import rollout

    scores: list[tuple[int, float]] = []
    unseen: list[float] = []
    for inst in instances:
        (cond,) = backbone.encode_condition(
            [inst.prompt], [[_pil(im) for _, _, im in inst.references]], height=64, width=64
        )
        result = rollout(
            backbone, cond, group_size=1, num_steps=num_steps, generator=torch.Generator().manual_seed(1)
        )
        assert result.images is not None
        image = (result.images[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round() / 255
        mse = float(np.mean((image - inst.target) ** 2))
        scores.append((len(inst.references), 10 * math.log10(1 / max(mse, 1e-10))))
        if inst.category not in BASE_CATEGORIES:
            unseen.append(scores[-1][1])
    few = [s for n, s in scores if n <= FEW_REFS]
    many = [s for n, s in scores if n > FEW_REFS]
    return {
        "psnr": float(np.mean([s for _, s in scores])),
        "psnr_few_refs": float(np.mean(few)) if few else float("nan"),
        "psnr_many_refs": float(np.mean(many)) if many else float("nan"),
        "psnr_unseen_types": float(np.mean(unseen)) if unseen else float("nan"),
    }


def train_transformer(
    backbone: Any,
    instances: list[Any],
    *,
    steps: int,
    accumulate: int,
    lr: float,
    seed: int,
    noise_draws: int = 1,
    on_checkpoint: Any = None,
    checkpoint_every: int = 0,
    stop_after: int | None = None,
) -> list[float]:
    """Rectified-flow pre-training of every transformer weight (returns the loss curve).

    Each step averages ``accumulate`` scenes; each scene is noised at ``noise_draws`` levels
    that go through the transformer as one batch (per-sample σ), which costs far less than
    ``noise_draws`` separate forwards on a model this small. Every ``checkpoint_every`` steps
    (and at the end) ``on_checkpoint(step, curve)`` is called with the model in eval mode.
    ``stop_after`` ends the run after that many steps of the ``steps``-long schedule.
    """
    transformer = backbone.transformer
    gen = torch.Generator().manual_seed(seed)
    pil = _pil
    encoded = []
    for inst in tqdm(instances, desc="encoding conditions", unit="scene"):
        (cond,) = backbone.encode_condition(
            [inst.prompt], [[pil(im) for _, _, im in inst.references]], height=64, width=64
        )
        target = torch.from_numpy(inst.target).permute(2, 0, 1)[None]
        encoded.append((cond, backbone.encode_images(target).float()))
    transformer.train().requires_grad_(True)
    params = [p for p in transformer.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.99))
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    curve: list[float] = []
    last = steps if stop_after is None else min(steps, stop_after)
    bar = tqdm(range(last), desc="transformer", unit="step")
    for _ in bar:
        total = 0.0
        for k in torch.randint(len(encoded), (accumulate,), generator=gen).tolist():
            cond, x0 = encoded[k]
            sigma = torch.sigmoid(torch.randn((noise_draws,), generator=gen))
            noise = torch.randn((noise_draws, *x0.shape[1:]), generator=gen)
            x0 = x0.expand_as(noise)
            v = backbone.velocity(noisy_latents(x0, noise, sigma), sigma, cond)
            loss = flow_matching_loss(v, x0, noise) / accumulate
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        curve.append(total)
        bar.set_postfix(loss=f"{np.mean(curve[-50:]):.4f}")
        step = len(curve)
        if on_checkpoint is not None and checkpoint_every and step % checkpoint_every == 0 and step < last:
            transformer.eval()
            on_checkpoint(step, curve)
            transformer.train()
    transformer.eval().requires_grad_(False)
    if on_checkpoint is not None:
        on_checkpoint(len(curve), curve)
    return curve


def make_codec(instances: list[Any], *, seed: int, args: argparse.Namespace) -> Any:
    """The pipeline's image codec and prompt side: a trained VAE, a word-level tokenizer, and the
    tiny checkpoint's text encoder, processor and scheduler (no transformer yet)."""
    from diffusers import AutoencoderKLQwenImage, QwenImageEditPlusPipeline
    from rewardkit_backbones.qwen_image_edit import make_tiny_checkpoint

    codec = _instances(args.scenes // 2, seed + 1, 64, codec_pairs())
    images = [inst.target for inst in instances + codec]
    images += [im for inst in instances + codec for _, _, im in inst.references]
    vae = AutoencoderKLQwenImage(**VAE)
    train_vae(vae, images, steps=args.vae_steps, batch=args.vae_batch, lr=args.vae_lr, seed=seed)
    mean, std = latent_statistics(vae, images[:: max(1, len(images) // 512)])
    logger.info("latent mean %s std %s", np.round(mean, 3), np.round(std, 3))
    trained_vae = AutoencoderKLQwenImage(**VAE, latents_mean=mean, latents_std=std)
    trained_vae.load_state_dict(vae.state_dict())
    with tempfile.TemporaryDirectory() as tmp:
        # Text encoder, processor and scheduler of the tiny checkpoint, with a word-level tokenizer.
        tokenizer = prompt_tokenizer([inst.prompt for inst in instances + codec])
        make_tiny_checkpoint(Path(tmp), tokenizer=tokenizer)
        pipe = QwenImageEditPlusPipeline.from_pretrained(tmp)
    pipe.register_modules(vae=trained_vae)
    return pipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--out", default="examples/assets/dyref-tiny-qwen", help="output pipeline folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, initialisation and noise")
    parser.add_argument("--scenes", type=int, default=4000, help="pre-training scenes rendered")
    parser.add_argument("--vae-steps", type=int, default=900, help="VAE optimiser steps")
    parser.add_argument("--vae-lr", type=float, default=2e-3, help="VAE learning rate")
    parser.add_argument("--vae-batch", type=int, default=16, help="VAE batch size")
    parser.add_argument("--steps", type=int, default=3000, help="transformer optimiser steps")
    parser.add_argument("--accumulate", type=int, default=8, help="scenes per transformer step")
    parser.add_argument(
        "--noise-draws", type=int, default=1, help="noise levels per scene, batched in one forward"
    )
    parser.add_argument("--lr", type=float, default=2e-3, help="transformer learning rate")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--reuse-codec",
        default=None,
        help="pipeline folder whose VAE, tokenizer and text encoder are kept (transformer trained anew)",
    )
    parser.add_argument(
        "--init-transformer",
        default=None,
        help="transformer folder to continue training from (default: a fresh initialisation)",
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        default=500,
        help="steps between checkpoints: the transformer is saved and its sample PSNR vs target "
        "measured on --eval-scenes held-out scenes (pretraining_log.jsonl); 0: only at the end",
    )
    parser.add_argument("--eval-scenes", type=int, default=43, help="held-out scenes of the PSNR check")
    parser.add_argument(
        "--categories",
        default=",".join(BASE_CATEGORIES),
        help="comma-separated OmniRef-mini categories of the transformer's data ('all': every one)",
    )
    parser.add_argument("--max-refs", type=int, default=MAX_PRETRAIN_REFS, help="most references per scene")
    parser.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="stop after this many steps of the --steps schedule (a phase of a longer schedule)",
    )
    args = parser.parse_args(argv)
    # bad flags end in one line (exit 2) before anything is rendered or written
    categories = tuple(CATEGORIES) if args.categories == "all" else tuple(args.categories.split(","))
    try:
        pretraining_pairs(categories, args.max_refs)
    except ValueError as err:
        parser.error(f"--categories/--max-refs: {err}")
    for flag, folder, needed in (
        ("--init-transformer", args.init_transformer, "config.json"),
        ("--reuse-codec", args.reuse_codec, "model_index.json"),
    ):
        if folder is not None and not (Path(folder) / needed).is_file():
            parser.error(f"{flag} {folder}: no {needed} there (expected a diffusers folder)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    from diffusers import QwenImageEditPlusPipeline, QwenImageTransformer2DModel
    from rewardkit_backbones._common import write_checkpoint_defaults

    started = time.time()
    torch.manual_seed(args.seed)
    instances = _instances(args.scenes, args.seed, 64, pretraining_pairs(categories, args.max_refs))
    out = Path(args.out)
    if args.reuse_codec:
        # VAE, tokenizer and text encoder from an earlier run; only the transformer is trained
        # (transformer=None: the old one is not loaded just to be replaced).
        pipe = QwenImageEditPlusPipeline.from_pretrained(args.reuse_codec, transformer=None)
        torch.manual_seed(args.seed)  # the fresh transformer's initialisation follows --seed
    else:
        pipe = make_codec(instances, seed=args.seed, args=args)
    if args.init_transformer:
        transformer = QwenImageTransformer2DModel.from_pretrained(args.init_transformer)
    else:
        transformer = QwenImageTransformer2DModel(**TRANSFORMER)
    pipe.register_modules(transformer=transformer)
    pipe.save_pretrained(str(out))
    write_checkpoint_defaults(out, "qwen-image-edit-2511", OPTIONS)

    backbone = rewardkit.load_backbone("qwen-image-edit-2511", str(out), device="cpu")
    held_out = held_out_instances(args.eval_scenes, seed=args.seed)
    checks: list[dict[str, float]] = []

    def checkpoint(step: int, curve: list[float]) -> None:
        """Save the transformer and measure what it paints (the log survives a kill)."""
        backbone.pipe.transformer.save_pretrained(str(out / "transformer"))
        check = {"step": step, "loss": float(np.mean(curve[-50:])), **evaluate_psnr(backbone, held_out)}
        check["minutes"] = round((time.time() - started) / 60, 1)
        checks.append(check)
        with (out / "pretraining_log.jsonl").open("a") as log:
            log.write(json.dumps(check) + "\n")
        logger.info("step %d: %s", step, check)

    curve = train_transformer(
        backbone,
        instances,
        steps=args.steps,
        accumulate=args.accumulate,
        lr=args.lr,
        seed=args.seed,
        noise_draws=args.noise_draws,
        on_checkpoint=checkpoint,
        checkpoint_every=args.eval_every,
        stop_after=args.stop_after,
    )
    record = {
        "seed": args.seed,
        "scenes": args.scenes,
        "max_references": args.max_refs,
        "categories": list(categories),
        "vae_steps": args.vae_steps,
        "transformer_steps": args.steps,
        "stop_after": args.stop_after,
        "accumulate": args.accumulate,
        "noise_draws": args.noise_draws,
        "lr": args.lr,
        "architecture": TRANSFORMER,
        "codec": args.reuse_codec or "trained here",
        "init_transformer": args.init_transformer,
        "final_loss": float(np.mean(curve[-50:])),
        "held_out": checks[-1],
        "minutes": round((time.time() - started) / 60, 1),
    }
    (out / "pretraining.json").write_text(json.dumps(record, indent=2) + "\n")
    logger.info("wrote %s (%s)", out, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
