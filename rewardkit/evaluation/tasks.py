"""Evaluation tasks: what [`evaluate`][rewardkit.evaluate] loops over, one per benchmark format.

Every benchmark format implements the small [`EvalTask`][rewardkit.evaluation.tasks.EvalTask]
protocol — its items, which generated image belongs to which item, scoring one run, the
summary and the files — so the evaluation loop in
[`pipeline`][rewardkit.evaluation.pipeline] knows no format:

* [`OmniRefTask`][rewardkit.evaluation.omniref_task.OmniRefTask]: OmniRef-Bench metadata and
  OmniRef-mini (the registered per-image metrics of
  [`metric_registry`][rewardkit.evaluation.metric_registry], target fidelity, the MLLM judge);
* [`CaseTask`][rewardkit.evaluation.case_task.CaseTask]: MICo-style cases (Weighted-Ref-VIEScore)
  and dual-reference cases (the yes/no judge).
"""

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from rewardkit.evaluation.benchmark import Benchmark, load_benchmark
from rewardkit.evaluation.cases import (
    CaseSet,
    detect_format,
    load_cases,
)
from rewardkit.evaluation.generation import GenerationItem

if TYPE_CHECKING:
    from rewardkit.evaluation.config import EvalConfig

__all__ = ["JUDGE_CHUNK", "EvalTask", "Pairs", "load_task", "match_images"]

logger = logging.getLogger("rewardkit.evaluation")

JUDGE_CHUNK: Final[int] = 16  # images per judge batch (bounds the memory of encoded requests)

Pairs = list[tuple[Any, Path]]


@runtime_checkable
class EvalTask(Protocol):
    """One benchmark format, as the evaluation loop sees it.

    The loop calls, in order: ``check`` (before any image is generated), ``generation_items``
    (runs with a backbone), ``match`` (per run), ``describe`` (the settings and notes),
    ``prepare`` (load the models once), ``score`` (per run), ``summarize``, ``write`` (with
    an ``out_dir``) and ``table``.
    """

    kind: str
    items: Sequence[Any]

    def check(self, config: "EvalConfig") -> None:
        """Refuse a config this task cannot run (before anything is generated)."""
        ...

    def generation_items(self) -> list[GenerationItem]:
        """What a backbone generates: one item per benchmark item."""
        ...

    def match(self, found: Mapping[int, Path], *, faithful: bool) -> tuple[Pairs, list[int]]:
        """Pair items with the images ``found`` (index → path); also the indices without one."""
        ...

    def uses_judge(self, config: "EvalConfig") -> bool:
        """Whether the MLLM judge scores this task under ``config``."""
        ...

    def describe(self, config: "EvalConfig", settings: dict[str, Any], notes: list[str]) -> None:
        """Add the task's settings and caveats to ``settings`` / ``notes``."""
        ...

    def prepare(self, config: "EvalConfig", notes: list[str]) -> None:
        """Load what scoring needs, once for all runs."""
        ...

    def score(self, run: str, pairs: Pairs, config: "EvalConfig") -> list[Any]:
        """The per-image records of one run."""
        ...

    def summarize(
        self,
        records: Mapping[str, Sequence[Any]],
        extra: Mapping[str, Mapping[str, Any]],
        settings: dict[str, Any],
        notes: list[str],
        config: "EvalConfig",
    ) -> dict[str, Any]:
        """The ``summary.json`` dict of all runs."""
        ...

    def write(
        self,
        out: Path,
        records: Mapping[str, Sequence[Any]],
        summary: dict[str, Any],
        extra: Mapping[str, Mapping[str, Any]],
        folders: Mapping[str, Path],
        config: "EvalConfig",
    ) -> dict[str, Any]:
        """Write the files into ``out``; return the summary as written."""
        ...

    def table(self, summary: Mapping[str, Any]) -> str:
        """The Markdown table of the summary."""
        ...


def load_task(benchmark: Any, root: str | Path | None = None, limit: int | None = None) -> EvalTask:
    """The task of a benchmark file (format detected), a loaded ``Benchmark`` / ``CaseSet`` or a task."""
    from rewardkit.evaluation.case_task import CaseTask
    from rewardkit.evaluation.omniref_task import OmniRefTask

    if isinstance(benchmark, OmniRefTask | CaseTask):
        loaded: Benchmark | CaseSet = benchmark.bench
    elif isinstance(benchmark, Benchmark | CaseSet):
        loaded = benchmark
    else:
        fmt = detect_format(benchmark)
        loaded = (
            load_benchmark(benchmark, root) if fmt == "omniref" else load_cases(benchmark, root, kind=fmt)
        )
    if limit is not None:
        if isinstance(loaded, Benchmark):
            loaded = Benchmark(loaded.instances[:limit], loaded.root)
        else:
            loaded = CaseSet(loaded.kind, loaded.cases[:limit], loaded.root)
    return OmniRefTask(loaded) if isinstance(loaded, Benchmark) else CaseTask(loaded)


def match_images(
    items: Sequence[Any], positions: Mapping[int, int], found: Mapping[int, Path], *, faithful: bool
) -> tuple[list[tuple[Any, Path]], list[int]]:
    """Pair items with their images; return the pairs and the indices without an image.

    The default keys images by the ``index`` field. ``faithful`` reproduces the reference
    scripts, which looked up ``metadata[int(stem)]``: image ``k.png`` is scored against the item
    at list position ``k``, whatever its ``index``.
    """
    pairs, missing = [], []
    for item in items:
        key = positions[item.index] if faithful else item.index
        if key in found:
            pairs.append((item, found[key]))
        else:
            missing.append(item.index)
    return pairs, missing
