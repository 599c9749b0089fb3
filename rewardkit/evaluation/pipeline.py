"""One call from image folders (or backbones to generate with) to the paper's table and plots.

[`evaluate`][rewardkit.evaluate] takes named runs — folders of ``{index}.png`` and/or a backbone
with an optional LoRA to generate them — and a benchmark, and scores every run:

* **OmniRef-Bench** metadata (or OmniRef-mini): the five objective metrics and, with a judge,
  the six MLLM dimensions, aggregated as the paper's Tab. 2 and by number of references; when
  the instances carry ground-truth targets, also target fidelity (PSNR, SSIM, an LPIPS-style
  distance), the diversity of each run's images against the targets' with a collapse warning,
  and a contact sheet;
* **MICo-Bench-style** cases: Weighted-Ref-VIEScore (seed 004);
* **dual-reference** cases: the three-question yes/no judge (seed 003).

With ``out_dir`` it writes ``scores_<run>.jsonl``, ``summary.json``, ``report.md``, PNG plots and
(with targets) ``contact_sheet.png``.
Every model is loaded once and shared by the runs; reference features are computed once.

This module holds the settings and the loop; each benchmark format is an
[`EvalTask`][rewardkit.evaluation.tasks.EvalTask] ([`tasks`][rewardkit.evaluation.tasks]) and
each per-image metric a registered function
([`metric_registry`][rewardkit.evaluation.metric_registry]).
"""

import dataclasses
import gc
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from rewardkit.evaluation.config import (  # re-exported: the settings lived here before the split
    ALL_METRICS,
    DEFAULT_METRICS,
    OFFLINE_SIMILARITY,
    OFFLINE_STYLE,
    EncoderLike,
    EvalConfig,
    EvalReport,
    JudgeSettings,
    Run,
)
from rewardkit.evaluation.generation import find_images, generate_images
from rewardkit.evaluation.tasks import EvalTask, load_task

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "OFFLINE_SIMILARITY",
    "OFFLINE_STYLE",
    "EncoderLike",
    "EvalConfig",
    "EvalReport",
    "JudgeSettings",
    "Run",
    "evaluate",
]

logger = logging.getLogger("rewardkit.evaluation")

# --------------------------------------------------------------------------- helpers


def _runs(runs: Any) -> list[Run]:
    if isinstance(runs, str | Path):
        return [Run("model", images=runs)]
    if isinstance(runs, Mapping):
        out = [v if isinstance(v, Run) else Run(str(k), images=v) for k, v in runs.items()]
    elif isinstance(runs, Iterable):
        out = list(runs)
    else:
        raise TypeError(f"runs must be a folder, a {{name: folder}} mapping or a list of Run, got {runs!r}")
    if not out or not all(isinstance(r, Run) for r in out):
        raise ValueError("runs must name at least one run (a folder, {name: folder}, or Run objects)")
    names = [r.name for r in out]
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be unique, got {names}")
    return out


def _prepare_images(run: Run, task: EvalTask, out_dir: Path | None, config: EvalConfig) -> Path:
    if run.backbone is None:
        assert run.images is not None
        return Path(run.images)
    if run.images is None and out_dir is None:
        raise ValueError(f"run {run.name!r} generates images: give it images= a folder, or pass out_dir=")
    folder = Path(run.images) if run.images is not None else Path(out_dir or ".") / "images" / run.name
    items = task.generation_items()
    done = find_images(folder) if folder.is_dir() else {}
    if not config.overwrite and all(it.index in done for it in items):
        return folder  # nothing to generate: do not even load the model
    from rewardkit.backbone.registry import load_backbone

    options = dict(run.options)
    if run.lora is not None:
        options["adapter"] = str(run.lora)
    backbone = load_backbone(run.backbone, str(run.checkpoint), **options)
    describe = {"checkpoint": str(run.checkpoint), "lora": None if run.lora is None else str(run.lora)}
    generate_images(
        backbone,
        items,
        folder,
        settings=config.generation,
        overwrite=config.overwrite,
        progress=config.progress,
        describe=describe,
    )
    del backbone
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return folder


# --------------------------------------------------------------------------- evaluate


def _settings(
    task: EvalTask,
    runs: Sequence[Run],
    folders: Mapping[str, Path],
    config: EvalConfig,
    source: Any,
) -> tuple[dict[str, Any], list[str]]:
    import rewardkit

    settings: dict[str, Any] = {
        "benchmark": str(source) if isinstance(source, str | Path) else type(source).__name__,
        "format": task.kind,
        "items": len(task.items),
        "mode": "faithful" if config.faithful else "default",
        "versions": {"rewardkit": rewardkit.__version__, "torch": torch.__version__},
        "runs": {
            r.name: {
                "images": str(folders[r.name]),
                **(
                    {
                        "backbone": r.backbone,
                        "checkpoint": str(r.checkpoint),
                        "lora": None if r.lora is None else str(r.lora),
                        "generation": config.generation.to_json(),
                    }
                    if r.backbone is not None
                    else {}
                ),
            }
            for r in runs
        },
    }
    notes: list[str] = []
    if config.faithful:
        notes.append("faithful mode: the reference scripts' deterministic quirks are reproduced")
    task.describe(config, settings, notes)
    if config.judge is not None and task.uses_judge(config):
        client = config.judge.build_client(faithful=config.faithful)
        settings["judge"] = {
            "model": client.config.model,
            "base_url": client.config.base_url,
            "temperature": client.config.temperature,
            "applicability": config.judge.applicability or ("model" if config.faithful else "metadata"),
        }
        notes.append(
            "judge prompts are rewardkit's own wording (reconstructions, not the authors' templates)"
        )
        if config.judge.faces_as_objects:
            notes.append("MICo face sources were judged with the VLM yes/no instead of a face similarity")
    return settings, notes


def evaluate(
    runs: Any,
    benchmark: Any,
    *,
    out_dir: str | Path | None = None,
    root: str | Path | None = None,
    config: EvalConfig | None = None,
    **options: Any,
) -> EvalReport:
    """Evaluate one or several methods on a benchmark; optionally write the report files.

    Args:
        runs: a folder of ``{index}.png``; ``{name: folder}``; or a list of
            [`Run`][rewardkit.evaluation.pipeline.Run] (folders and/or backbone + LoRA to generate).
        benchmark: an OmniRef-Bench metadata file, a MICo-style or dual-reference cases file
            (the format is detected), or a loaded ``Benchmark`` / ``CaseSet``.
        out_dir: where to write ``scores_<run>.jsonl``, ``summary.json``, ``report.md``, the
            plots, ``contact_sheet.png`` (when the instances have targets; see
            [`contact_sheet`][rewardkit.evaluation.contact_sheet.contact_sheet]) and generated
            images (``images/<run>/``); ``None`` writes nothing (runs that generate then need
            ``Run(images=...)``).
        root: folder the benchmark's paths are relative to (default: the file's folder).
        config: an [`EvalConfig`][rewardkit.evaluation.pipeline.EvalConfig].
        **options: [`EvalConfig`][rewardkit.evaluation.pipeline.EvalConfig] fields overriding
            ``config`` (``metrics=``, ``faithful=``, ``judge=``, ...).

    Returns:
        An [`EvalReport`][rewardkit.evaluation.pipeline.EvalReport]. With targets and the
        ``fidelity`` metric, each image's record has ``psnr``, ``ssim`` and ``perceptual``, each
        run's summary a ``fidelity`` block, and ``summary["warnings"]`` lists collapse warnings
        (a run's diversity below ``collapse_threshold`` × the targets', or below
        ``collapse_drop`` × the previous run's); they are also logged and head ``report.md``.

    Raises:
        ValueError: bad runs or options; images missing for some items (unless
            ``allow_missing``); a judge-scored benchmark or ``"mllm"`` without a judge.
        FileNotFoundError: a missing benchmark file, image folder or reference.

    Example:
        ``evaluate({"base": "out/base", "rl": "out/rl"}, "OmniRef-Bench/metadata.json",
        out_dir="report", clip=EncoderSpec("clip", "/models/clip-vit-base-patch16"))``
    """
    cfg = dataclasses.replace(config or EvalConfig(), **options)
    run_list = _runs(runs)
    task = load_task(benchmark, root, cfg.limit)
    out = Path(out_dir) if out_dir is not None else None
    task.check(cfg)

    folders = {run.name: _prepare_images(run, task, out, cfg) for run in run_list}
    matched: dict[str, list[tuple[Any, Path]]] = {}
    extra: dict[str, dict[str, Any]] = {}
    for run in run_list:
        pairs, missing = task.match(find_images(folders[run.name]), faithful=cfg.faithful)
        if missing and not cfg.allow_missing:
            raise ValueError(
                f"run {run.name!r}: {len(missing)} of {len(task.items)} images are missing in "
                f"{folders[run.name]} (indices {missing[:10]}{' ...' if len(missing) > 10 else ''}); "
                "generate them, or pass allow_missing=True (--allow-missing) to score the rest"
            )
        if missing:
            logger.warning("run %s: %d image(s) missing, scoring the rest", run.name, len(missing))
        matched[run.name] = pairs
        extra[run.name] = {"missing_images": missing}

    settings, notes = _settings(task, run_list, folders, cfg, benchmark)
    task.prepare(cfg, notes)
    records = {run.name: task.score(run.name, matched[run.name], cfg) for run in run_list}
    summary = task.summarize(records, extra, settings, notes, cfg)
    if out is not None:
        summary = task.write(out, records, summary, extra, folders, cfg)
    return EvalReport(summary, records, task.table(summary), out)
