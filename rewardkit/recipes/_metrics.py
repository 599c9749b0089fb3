"""Recipe metrics: the run logger, per-epoch averages, reward / tensor summaries and plots."""

import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rewardkit.recipes._common import Dist
from rewardkit.recipes.config import LogConfig, config_to_dict

__all__ = ["MetricLogger", "Stats", "plot_history", "reward_metrics", "tensor_metrics"]


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
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print(
                    "[rewardkit] log.tensorboard is on but tensorboard is not installed "
                    "(pip install tensorboard); skipping TensorBoard",
                    file=sys.stderr,
                )
            else:
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
