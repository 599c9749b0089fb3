"""Plumbing shared by the recipes: CLI arguments, processes, data, seeds, weights, metrics.

Nothing here is a training loop; the loops live, whole, in ``sft.py`` and ``grpo.py``.
"""

import argparse
import contextlib
import importlib
import json
import math
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from rewardkit.backbone import Backbone, Condition, load_backbone
from rewardkit.evaluation.benchmark import BenchInstance, Benchmark, load_benchmark
from rewardkit.recipes.config import (
    ConfigError,
    DataConfig,
    LogConfig,
    ModelConfig,
    OptimConfig,
    config_to_dict,
    load_config,
)
from rewardkit.rewards import Reference, SampleContext
from rewardkit.training import CheckpointError, latest_checkpoint, load_lora

__all__ = [
    "Dist",
    "EncodedSplit",
    "Example",
    "MetricLogger",
    "Stats",
    "add_arguments",
    "all_reduce_grads",
    "chunk_plan",
    "clip_and_step",
    "config_from_args",
    "data_order",
    "derive_seed",
    "generator",
    "import_modules",
    "init_distributed",
    "load_example",
    "load_model",
    "load_split",
    "make_optimizer",
    "plot_history",
    "resolve_resume",
    "reward_metrics",
    "swapped_weights",
    "tensor_metrics",
    "warmup_scheduler",
    "write_debug",
]

C = TypeVar("C")


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``rewardkit sft`` and ``rewardkit grpo``."""
    parser.add_argument("--config", metavar="YAML", help="YAML config file (sections as in the docs)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, value parsed as YAML (repeatable), e.g. --set optim.lr=1e-4",
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

    Returns 0 on success and 2 on a configuration or checkpoint error (printed, not raised).
    """
    try:
        config = config_from_args(cls, recipe, args)
        if args.print_config:
            print_config(config)
            return 0
        train(config, resume=args.resume)
    except (ConfigError, CheckpointError) as err:
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
    """This process in the run: accelerate's state, rank, world size and device."""

    accelerator: Any
    rank: int
    world: int
    device: torch.device

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
    DeepSpeed / FSDP plugins are refused: LoRA gradients are averaged explicitly (DDP
    semantics), and the frozen base is replicated on each process.
    """
    try:
        from accelerate import Accelerator
    except ImportError as err:  # pragma: no cover - accelerate is part of rewardkit[backbones]
        raise ImportError("the recipes need accelerate: pip install 'rewardkit[backbones]'") from err
    # Without CUDA, accelerate forms a multi-process CPU (gloo) group only when asked for the CPU.
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    kind = str(accelerator.distributed_type)
    if "DEEPSPEED" in kind or "FSDP" in kind:
        raise ConfigError(
            f"accelerate is configured for {kind}; rewardkit's recipes average the LoRA gradients "
            "themselves (DDP semantics) and keep the frozen base on every process. Use a multi-GPU "
            "(DDP) accelerate config: accelerate launch --multi_gpu --num_processes N ..."
        )
    device = accelerator.device
    if device.type == "cpu":
        device = torch.device("cpu")
    return Dist(accelerator, accelerator.process_index, accelerator.num_processes, device)


def all_reduce_grads(dist: Dist, params: Sequence[Tensor]) -> None:
    """Average the gradients of ``params`` over all processes (one flat all-reduce)."""
    if dist.world == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    flat = dist.accelerator.reduce(flat, reduction="mean")
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
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
# data
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One benchmark instance with its images loaded.

    Attributes:
        instance: the metadata entry.
        references: RGB PIL images in prompt order (the backbone's condition).
        target: the ground-truth RGB PIL image, or None.
        context: the reward context (target as a tensor, typed references).
    """

    instance: BenchInstance
    references: list[Any]
    target: Any
    context: SampleContext


def load_split(metadata: str, limit: int | None) -> Benchmark:
    """A split's metadata, optionally cut to its first ``limit`` instances."""
    try:
        bench = load_benchmark(metadata)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"cannot read data split {metadata!r}: {err}") from err
    if limit is not None:
        bench = Benchmark(bench.instances[:limit], bench.root)
    if len(bench) == 0:
        raise ConfigError(f"data split {metadata!r} holds no instances")
    return bench


def _open_rgb(path: Path) -> Any:
    from PIL import Image

    if not path.is_file():
        raise FileNotFoundError(f"image {str(path)!r} listed in the metadata does not exist")
    with Image.open(path) as img:
        return img.convert("RGB")


def pil_to_tensor(image: Any) -> Tensor:
    """RGB PIL image → `(3, H, W)` float32 in [0, 1]."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def load_example(bench: Benchmark, position: int) -> Example:
    """Open the images of instance ``position`` of ``bench``."""
    inst = bench.instances[position]
    refs = [_open_rgb(bench.resolve(r.path)) for r in inst.references]
    target = _open_rgb(bench.resolve(inst.target)) if inst.target is not None else None
    context = SampleContext(
        prompt=inst.prompt,
        targets=(pil_to_tensor(target),) if target is not None else (),
        references=tuple(
            Reference(pil_to_tensor(img), ref.type, ref.subject_name or "")
            for img, ref in zip(refs, inst.references, strict=True)
        ),
        n_refs=len(refs),
        metadata={"index": inst.index, "category": inst.category},
    )
    return Example(inst, refs, target, context)


class EncodedSplit:
    """A split's examples, conditions and (for SFT) target latents, encoded on demand.

    With ``cache=True`` everything is kept in memory after first use (fast for small splits and
    tests; memory grows with the split), otherwise each call loads and encodes again.
    """

    def __init__(
        self,
        backbone: Backbone,
        split: Benchmark,
        data: DataConfig,
        *,
        negative_prompt: str | None,
        cache: bool,
    ) -> None:
        self.backbone, self.split, self.data = backbone, split, data
        self.negative_prompt = negative_prompt
        self.cache: dict[tuple[str, int], Any] | None = {} if cache else None

    @classmethod
    def load(
        cls,
        backbone: Backbone,
        data: DataConfig,
        metadata: str,
        limit: int | None,
        *,
        negative_prompt: str | None,
    ) -> "EncodedSplit":
        """Read a split's metadata (see ``load_split``)."""
        return cls(
            backbone, load_split(metadata, limit), data, negative_prompt=negative_prompt, cache=data.cache
        )

    def __len__(self) -> int:
        return len(self.split)

    def _cached(self, kind: str, position: int, make: Any) -> Any:
        if self.cache is None:
            return make()
        key = (kind, position)
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def example(self, position: int) -> Example:
        """Instance ``position`` with its images loaded."""
        return self._cached("example", position, lambda: load_example(self.split, position))  # type: ignore[no-any-return]

    def condition(self, position: int) -> Condition:
        """The backbone's condition of instance ``position`` (at ``data.height × data.width``)."""

        def make() -> Condition:
            ex = self.example(position)
            (cond,) = self.backbone.encode_condition(
                [ex.instance.prompt],
                [ex.references],
                height=self.data.height,
                width=self.data.width,
                negative_prompt=self.negative_prompt,
            )
            return cond

        return self._cached("condition", position, make)  # type: ignore[no-any-return]

    def target_latents(self, position: int) -> Tensor:
        """`(1, L, D)` latents of the target resized to the condition's size."""

        def make() -> Tensor:
            from PIL import Image

            ex, cond = self.example(position), self.condition(position)
            if ex.target is None:
                raise ConfigError(f"instance {ex.instance.index} has no target image; SFT needs targets")
            image = ex.target.resize((cond.width, cond.height), Image.Resampling.BICUBIC)
            with torch.no_grad():
                pixels = pil_to_tensor(image)[None].to(self.backbone.device)
                return self.backbone.encode_images(pixels).float()

        return self._cached("target", position, make)  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------------------------
# model and weights
# ----------------------------------------------------------------------------------------------


def load_model(config: ModelConfig, device: torch.device, *, seed: int) -> Backbone:
    """Load the backbone on ``device`` and attach its adapter (fresh, or ``config.adapter``).

    A fresh adapter's random ``lora_A`` initialisation is drawn with the global RNG seeded by
    ``seed`` inside ``fork_rng`` (the caller's RNG state is left as it was): runs are reproducible.
    """
    options = dict(config.options)
    if "adapter" in options:
        raise ConfigError("set the starting adapter with model.adapter, not model.options.adapter")
    options.setdefault("device", str(device))
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
    backbone.set_gradient_checkpointing(config.gradient_checkpointing)
    return backbone


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


# ----------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------


class MetricLogger:
    """Metrics to stdout and ``metrics.jsonl`` (main process), and TensorBoard / W&B when installed.

    Also writes the resolved run configuration to ``config.yaml`` in the output folder.
    """

    def __init__(
        self,
        output_dir: Path,
        *,
        enabled: bool,
        tensorboard: bool,
        wandb: bool,
        project: str,
        config: Mapping[str, Any],
        name: str,
    ) -> None:
        self.enabled = enabled
        self.name = name
        self.file = output_dir / "metrics.jsonl"
        self._tb: Any = None
        self._wandb: Any = None
        if not enabled:
            return
        output_dir.mkdir(parents=True, exist_ok=True)
        import yaml

        (output_dir / "config.yaml").write_text(
            yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8"
        )
        if tensorboard:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(output_dir / "tensorboard"))
        if wandb:
            try:
                import wandb as wandb_module
            except ImportError:
                print("[rewardkit] log.wandb is on but wandb is not installed; skipping W&B", file=sys.stderr)
            else:
                self._wandb = wandb_module.init(project=project, config=dict(config), dir=str(output_dir))

    @classmethod
    def for_run(cls, dist: Dist, log: LogConfig, config: Any, name: str) -> "MetricLogger":
        """The logger of a recipe run (enabled on the main process)."""
        return cls(
            Path(log.output_dir),
            enabled=dist.is_main,
            tensorboard=log.tensorboard,
            wandb=log.wandb,
            project=log.wandb_project,
            config=config_to_dict(config),
            name=name,
        )

    def log(self, step: int, metrics: Mapping[str, float], *, header: str) -> None:
        """Print one line, append a JSON record, forward to TensorBoard / W&B."""
        if not self.enabled:
            return
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in metrics.items())
        print(f"[{self.name}] {header} | {shown}", flush=True)
        record = {"step": step, "time": time.time(), **{k: float(v) for k, v in metrics.items()}}
        with self.file.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in metrics.items():
                self._tb.add_scalar(key, float(value), step)
        if self._wandb is not None:
            self._wandb.log(dict(metrics), step=step)

    def close(self) -> None:
        """Flush and close the writers."""
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


class Stats:
    """Per-epoch lists of scalars, averaged over the epoch and then over the processes."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def add(self, **values: float | Tensor) -> None:
        """Append one value per name (tensors are read with ``float``)."""
        for key, value in values.items():
            self.values.setdefault(key, []).append(float(value))

    def means(self, dist: Dist) -> dict[str, float]:
        """The mean of each name on this process, then averaged over all processes."""
        local = {key: sum(v) / len(v) for key, v in self.values.items() if v}
        if not local:
            return {}
        reduced = dist.accelerator.reduce(torch.tensor(list(local.values()), device=dist.device), "mean")
        return dict(zip(local, reduced.tolist(), strict=True))


def reward_metrics(rewards: Tensor, names: Sequence[str], weights: Tensor) -> dict[str, float]:
    """Each reward's mean and std over the batch (defined samples only) and ``reward/mean``.

    ``reward/mean`` is the batch mean of the weighted sum of the rewards, an undefined (NaN)
    reward counting as 0, so it is comparable between epochs only when the same rewards apply.
    """
    metrics = {"reward/mean": float((rewards.nan_to_num(0.0) @ weights).mean())}
    for k, name in enumerate(names):
        valid = rewards[:, k][~rewards[:, k].isnan()]
        metrics[f"reward/{name}/mean"] = float(valid.mean()) if len(valid) else math.nan
        metrics[f"reward/{name}/std"] = float(valid.std()) if len(valid) > 1 else 0.0
    return metrics


def tensor_metrics(**tensors: Tensor) -> dict[str, float]:
    """``name/mean``, ``name/std``, ``name/min`` and ``name/max`` of each tensor."""
    out: dict[str, float] = {}
    for name, t in tensors.items():
        out.update(
            {
                f"{name}/mean": float(t.mean()),
                f"{name}/std": float(t.std()) if t.numel() > 1 else 0.0,
                f"{name}/min": float(t.min()),
                f"{name}/max": float(t.max()),
            }
        )
    return out


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


def _fmt(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and float(value).is_integer() and abs(value) < 1e6):
        return str(int(value))
    return f"{value:.4g}"


def plot_history(
    history: Sequence[Mapping[str, float]], keys: Sequence[str], path: Path, *, x: str, title: str
) -> Path | None:
    """Line plot of ``keys`` against ``x`` over the history records; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        print("[rewardkit] matplotlib is not installed; skipping the plot", file=sys.stderr)
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        points = [(r[x], r[key]) for r in history if key in r and math.isfinite(r[key])]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=key)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(x)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
