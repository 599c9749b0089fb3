"""Plumbing shared by the recipes: CLI arguments, processes, seeds, weights, optimiser, resume.

Data loading lives in ``_data.py``, metric logging and plots in ``_metrics.py``.

Nothing here is a training loop; the loops live, whole, in ``sft.py`` and ``grpo.py``.
"""

import argparse
import contextlib
import importlib
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from pydantic import BaseModel
from torch import Tensor

from rewardkit.backbone import Backbone, load_backbone
from rewardkit.recipes.config import (
    ConfigError,
    ModelConfig,
    OptimConfig,
    config_to_dict,
    load_config,
)
from rewardkit.recipes.config_loading import add_config_arguments
from rewardkit.training import CheckpointError, LoraExport, latest_checkpoint, load_lora
from rewardkit.training.fsdp import FSDPSettings, fsdp_settings_from_accelerate, shard_denoiser

__all__ = [
    "Dist",
    "add_arguments",
    "all_reduce_grads",
    "check_same_forward_count",
    "chunk_plan",
    "clip_and_step",
    "config_from_args",
    "data_order",
    "derive_seed",
    "generator",
    "import_modules",
    "init_distributed",
    "load_model",
    "make_optimizer",
    "rank_positions",
    "resolve_resume",
    "swapped_weights",
    "warmup_scheduler",
    "write_debug",
]

C = TypeVar("C", bound=BaseModel)


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------


@dataclass
class StageResult:
    """What a recipe's ``train`` returns (each recipe documents its ``history`` records).

    Attributes:
        history: one record per epoch.
        adapter_dir: the final adapter in the backbone's format.
        export: the diffusers file and peft folder, or None on non-main processes.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    adapter_dir: Path | None = None
    export: LoraExport | None = None


def add_arguments(parser: argparse.ArgumentParser, *, epilog: str) -> None:
    """The options shared by ``rewardkit sft`` and ``rewardkit grpo``; ``epilog`` ends ``--help``."""
    parser.epilog = epilog + " See docs/training.md for every config key."
    add_config_arguments(
        parser, what="YAML config file (sections as in the docs)", set_example="optim.lr=1e-4"
    )
    parser.add_argument("--backbone", help="shortcut for --set model.backbone=...")
    parser.add_argument("--model-path", help="shortcut for --set model.path=... (checkpoint dir or hub id)")
    parser.add_argument("--train-data", help="shortcut for --set data.train=... (metadata.json)")
    parser.add_argument("--eval-data", help="shortcut for --set data.eval=... (metadata.json)")
    parser.add_argument("--adapter", help="shortcut for --set model.adapter=... (start from this LoRA)")
    parser.add_argument("--output-dir", help="shortcut for --set log.output_dir=...")
    parser.add_argument("--epochs", type=int, help="shortcut for --set train.epochs=...")
    parser.add_argument("--seed", type=int, help="shortcut for --set train.seed=...")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        metavar="CHECKPOINT",
        help="continue from the latest checkpoint in the output folder (or from CHECKPOINT); "
        "without it, an output folder that already holds checkpoints is refused",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config as YAML and exit"
    )


def config_from_args(cls: type[C], recipe: str, args: argparse.Namespace) -> C:
    """Resolve the config from ``--config``, the shortcut flags and ``--set`` overrides."""
    values: dict[str, dict[str, Any]] = {}
    shortcuts = {
        "backbone": ("model", "backbone"),
        "model_path": ("model", "path"),
        "train_data": ("data", "train"),
        "eval_data": ("data", "eval"),
        "adapter": ("model", "adapter"),
        "output_dir": ("log", "output_dir"),
        "epochs": ("train", "epochs"),
        "seed": ("train", "seed"),
    }
    for attr, (section, key) in shortcuts.items():
        value = getattr(args, attr, None)
        if value is not None:
            values.setdefault(section, {})[key] = value
    return load_config(cls, recipe=recipe, path=args.config, values=values, overrides=args.overrides)  # type: ignore[arg-type]


def run_recipe(cls: type[C], recipe: str, args: argparse.Namespace, train: Any) -> int:
    """Shared body of ``rewardkit sft|grpo``: build the config, print or train it.

    Returns 0 on success and 2 on a configuration, data or checkpoint error, or a failed write
    (a full disk; checkpoints are written atomically, so the last one is intact): one line on
    stderr naming the culprit, not a traceback.
    """
    try:
        config = config_from_args(cls, recipe, args)
        if args.print_config:
            print_config(config)
            return 0
        train(config, resume=args.resume)
    except (ConfigError, CheckpointError, OSError) as err:
        print(f"rewardkit {recipe}: error: {err}", file=sys.stderr)
        return 2
    return 0


def print_config(config: Any) -> None:
    """The resolved config as YAML on stdout."""
    import yaml

    print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")


def import_modules(names: Sequence[str]) -> None:
    """Import ``extra_imports`` (modules that register rewards or backbones)."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"extra_imports: cannot import {name!r}: {err}") from err


# ----------------------------------------------------------------------------------------------
# processes
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    """This process in the run: accelerate's state, rank, world size, device, FSDP settings.

    ``fsdp`` is None for data parallelism (the base replicated on every process) and the
    accelerate config's FSDP settings otherwise (the frozen base sharded; see
    [`shard_denoiser`][rewardkit.training.fsdp.shard_denoiser]).
    """

    accelerator: Any
    rank: int
    world: int
    device: torch.device
    fsdp: FSDPSettings | None = None

    @property
    def sharded(self) -> bool:
        """True when the denoiser is sharded over several processes (they must forward in step)."""
        return self.fsdp is not None and self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, exports and logs."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process."""
        self.accelerator.wait_for_everyone()


def init_distributed() -> Dist:
    """Start (or join) the process group through accelerate.

    Works under ``accelerate launch`` and ``torchrun`` (and plain ``python``: one process).
    With an accelerate FSDP config (``fsdp_version: 2``) the frozen base is sharded by
    [`load_model`][rewardkit.recipes._common.load_model]; without one it is replicated. Either way
    the LoRA gradients are averaged explicitly (one flat all-reduce). DeepSpeed is refused.
    """
    try:
        from accelerate import Accelerator
    except ImportError as err:  # pragma: no cover - accelerate is part of rewardkit[backbones]
        raise ImportError("the recipes need accelerate: pip install 'rewardkit[backbones]'") from err
    # Without CUDA, accelerate forms a multi-process CPU (gloo) group only when asked for the CPU.
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    kind = str(accelerator.distributed_type)
    if "DEEPSPEED" in kind:
        raise ConfigError(
            f"accelerate is configured for {kind}; rewardkit's recipes shard with FSDP2 instead: "
            "accelerate launch --config_file examples/configs/accelerate_fsdp.yaml ..."
        )
    try:
        # Read from accelerate's exported settings: on CPU accelerate itself reports MULTI_CPU.
        fsdp = fsdp_settings_from_accelerate()
    except ValueError as err:
        raise ConfigError(str(err)) from err
    device = accelerator.device
    if device.type == "cpu":
        device = torch.device("cpu")
    return Dist(accelerator, accelerator.process_index, accelerator.num_processes, device, fsdp)


def all_reduce_grads(dist: Dist, params: Sequence[Tensor]) -> None:
    """Average the gradients of ``params`` over all processes (one flat all-reduce).

    A parameter without a gradient (outside the graph, e.g. LoRA on a last block's discarded
    text stream) keeps none, as on one process, so AdamW leaves it alone; every process runs the
    same graph, so the same parameters have gradients everywhere.
    """
    if dist.world == 1:
        return
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in with_grad if p.grad is not None])
    # In place, and the gradients become views of the one buffer: the LoRA state grows by one
    # gradient-sized buffer at most (what the memory planner counts), not three.
    torch.distributed.all_reduce(flat)
    flat /= dist.world
    offset = 0
    for p in with_grad:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p)
        offset += n


# ----------------------------------------------------------------------------------------------
# seeds and data order
# ----------------------------------------------------------------------------------------------


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy ``SeedSequence``), the same on every rank."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def generator(*parts: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded with ``derive_seed(*parts)``."""
    return torch.Generator(device=device).manual_seed(derive_seed(*parts))


def data_order(n: int, seed: int, cycle: int) -> list[int]:
    """The instance order of the ``cycle``-th pass over ``n`` instances (a seeded permutation)."""
    return torch.randperm(n, generator=generator(seed, cycle, 0x5EED)).tolist()


def chunk_plan(total: int, chunks: int, rank: int, world: int) -> list[list[int]]:
    """Global sample ids of process ``rank``, one list per optimizer step.

    The ``total`` samples of an epoch (sample ``s`` belongs to group ``s // group_size``) are
    cut into ``chunks`` contiguous chunks, one per optimizer step, and each chunk is split
    evenly over the ``world`` processes, so every optimizer step averages the same samples
    whatever the number of processes.

    Example:
        >>> chunk_plan(8, 2, 0, 2), chunk_plan(8, 2, 1, 2)
        ([[0, 1], [4, 5]], [[2, 3], [6, 7]])
    """
    if total % (chunks * world):
        raise ConfigError(
            f"prompts_per_epoch × group_size = {total} samples must split evenly into "
            f"gradient_step_per_epoch ({chunks}) × processes ({world}) parts"
        )
    size, part = total // chunks, total // chunks // world
    return [list(range(c * size + rank * part, c * size + (rank + 1) * part)) for c in range(chunks)]


# ----------------------------------------------------------------------------------------------
# model and weights
# ----------------------------------------------------------------------------------------------


def load_model(config: ModelConfig, dist: Dist, *, seed: int) -> Backbone:
    """Load the backbone on this process's device, attach its adapter, shard it under FSDP.

    The adapter is fresh, or ``config.adapter``. A fresh adapter's random ``lora_A``
    initialisation is drawn with the global RNG seeded by ``seed`` inside ``fork_rng`` (the
    caller's RNG state is left as it was): runs are reproducible. Under FSDP the frozen base is
    sharded after the adapter is attached, with the LoRA parameters left whole (see
    [`shard_denoiser`][rewardkit.training.fsdp.shard_denoiser]).
    """
    options = dict(config.options)
    if "adapter" in options:
        raise ConfigError("set the starting adapter with model.adapter, not model.options.adapter")
    options.setdefault("device", str(dist.device))
    if dist.sharded and _accepts_option(config.backbone, "defer_transformer_placement"):
        # The base stays in CPU memory until fully_shard moves each block's shard to the device.
        options.setdefault("defer_transformer_placement", True)
    try:
        backbone = load_backbone(config.backbone, config.path, **options)
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:
        raise ConfigError(f"cannot load backbone {config.backbone!r} from {config.path!r}: {err}") from err
    if config.adapter is not None:
        # The adapter's own rank, alpha and targets win (as in the reference); say so.
        load_lora(backbone, config.adapter)
        print(f"[rewardkit] starting from adapter {config.adapter} (its rank and targets are used)")
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, 0x10A))
            backbone.add_adapter(
                rank=config.lora_rank, alpha=config.lora_alpha, target_modules=config.target_modules
            )
    fsdp_checkpointing = dist.fsdp is not None and dist.fsdp.activation_checkpointing
    backbone.set_gradient_checkpointing(config.gradient_checkpointing or fsdp_checkpointing)
    if dist.sharded and dist.fsdp is not None:
        with torch.no_grad():  # FSDP leaves its ignored (LoRA) parameters where they are
            for p in backbone.adapter_parameters():
                p.data = p.data.to(dist.device)
        try:
            blocks = shard_denoiser(
                backbone.transformer, dist.fsdp, ignored=backbone.adapter_parameters(), device=dist.device
            )
        except ValueError as err:
            raise ConfigError(str(err)) from err
        if dist.is_main:
            print(f"[rewardkit] FSDP2: {blocks} blocks of the base sharded over {dist.world} processes")
    return backbone


def _accepts_option(backbone: str, name: str) -> bool:
    """Whether ``backbone``'s options dataclass has the option ``name`` (plug-ins may lack it)."""
    import dataclasses

    from rewardkit.backbone.registry import get_plugin

    try:
        options = get_plugin(backbone).options
    except ValueError:
        return False  # load_backbone names the unknown backbone
    return (
        options is not None
        and dataclasses.is_dataclass(options)
        and any(f.name == name for f in dataclasses.fields(options))
    )


def rank_positions(n: int, dist: Dist) -> list[tuple[int, bool]]:
    """This process's share of ``n`` items (``k = rank, rank + world, ...``) as ``(k, keep)``.

    Sharded processes must call the denoiser equally often, so there the share is padded to
    ``ceil(n / world)`` items with repeats of item 0 marked ``keep=False`` (run, then dropped).
    """
    positions = [(k, True) for k in range(dist.rank, n, dist.world)]
    if dist.sharded and n > 0:
        positions += [(0, False)] * (-(-n // dist.world) - len(positions))
    return positions


def check_same_forward_count(counts: Sequence[int], what: str, *, fix: str) -> None:
    """Refuse a sharded plan in which processes would call the denoiser unequally often.

    ``counts[r]`` is the number of denoiser calls of process ``r`` (computed from the plan, the
    same on every process): an unequal count would leave FSDP's all-gathers waiting forever.
    ``fix`` says what to change.
    """
    if len(set(counts)) > 1:
        raise ConfigError(
            f"under FSDP every process must call the denoiser equally often, but the {what} plan "
            f"gives the processes {list(counts)} calls; {fix}"
        )


@contextlib.contextmanager
def swapped_weights(params: Sequence[Tensor], values: Sequence[Tensor]) -> Iterator[None]:
    """Temporarily copy ``values`` into ``params`` (EMA evaluation/export, KL reference)."""
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, v in zip(params, values, strict=True):
            p.copy_(v)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)


def write_debug(path: Path, **tensors: Tensor | list[Tensor]) -> None:
    """Write tensors (lists become ``name/i``) to a safetensors file, creating its folder."""
    from safetensors.torch import save_file

    flat: dict[str, Tensor] = {}
    for name, value in tensors.items():
        items = value if isinstance(value, list) else [value]
        keys = [f"{name}/{i}" for i in range(len(items))] if isinstance(value, list) else [name]
        flat.update({k: v.detach().cpu().contiguous() for k, v in zip(keys, items, strict=True)})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(flat, str(path))


def warmup_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Constant learning rate after a linear warm-up over ``warmup_steps`` optimizer steps."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    )


def resolve_resume(checkpoints: Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from, or None for a fresh run (refusing to overwrite one).

    Raises:
        CheckpointError: ``--resume`` without a checkpoint, or a fresh run into a folder that
            already holds checkpoints.
    """
    latest = latest_checkpoint(checkpoints) if checkpoints.is_dir() else None
    if resume is None:
        if latest is not None:
            raise CheckpointError(
                f"{checkpoints} already holds checkpoints (latest: {latest.name}); pass --resume to "
                "continue that run, or choose another log.output_dir"
            )
        return None
    if resume == "latest":
        if latest is None:
            raise CheckpointError(f"--resume: no checkpoint found in {checkpoints}")
        return latest
    path = Path(resume)
    if not path.exists():
        raise CheckpointError(f"--resume: {path} does not exist")
    return path


def make_optimizer(
    params: Sequence[torch.nn.Parameter], config: OptimConfig
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW on ``params`` and its (constant after warm-up) learning-rate schedule."""
    optimizer = torch.optim.AdamW(
        params, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay
    )
    return optimizer, warmup_scheduler(optimizer, config.warmup_steps)


def clip_and_step(
    dist: Dist,
    params: Sequence[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    max_grad_norm: float,
) -> float:
    """Average the gradients over processes, clip them, step, zero them; return the grad norm."""
    all_reduce_grads(dist, params)
    norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm > 0 else math.inf)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)
