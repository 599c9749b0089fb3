"""The case-set evaluation task: MICo-style cases and dual-reference cases, scored by a judge."""

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardkit.evaluation._images import load_rgb, to_tensor
from rewardkit.evaluation.cases import (
    CaseScore,
    CaseSet,
    MicoCase,
    cases_table,
    plot_cases,
    summarize_cases,
)
from rewardkit.evaluation.generation import GenerationItem
from rewardkit.evaluation.tasks import JUDGE_CHUNK, Pairs, match_images

if TYPE_CHECKING:
    from rewardkit.evaluation.config import EvalConfig

__all__ = ["CaseTask"]

logger = logging.getLogger("rewardkit.evaluation")


class CaseTask:
    """MICo-style (Weighted-Ref-VIEScore) and dual-reference (yes/no) cases, scored by a judge."""

    def __init__(self, cases: CaseSet) -> None:
        self.bench = cases
        self.kind: str = cases.kind
        self.items: Sequence[Any] = cases.cases
        self.judge: Any = None

    def check(self, config: "EvalConfig") -> None:
        """[`EvalTask.check`][rewardkit.evaluation.tasks.EvalTask.check]."""
        pass  # the missing judge is reported by prepare (after the images are matched)

    def generation_items(self) -> list[GenerationItem]:
        """[`EvalTask.generation_items`][rewardkit.evaluation.tasks.EvalTask.generation_items]."""
        return self.bench.generation_items()

    def match(self, found: Mapping[int, Path], *, faithful: bool) -> tuple[Pairs, list[int]]:
        """[`EvalTask.match`][rewardkit.evaluation.tasks.EvalTask.match]."""
        positions = {item.index: k for k, item in enumerate(self.items)}
        return match_images(self.items, positions, found, faithful=False)  # the position quirk is OmniRef's

    def uses_judge(self, config: "EvalConfig") -> bool:
        """[`EvalTask.uses_judge`][rewardkit.evaluation.tasks.EvalTask.uses_judge]."""
        return True

    def describe(self, config: "EvalConfig", settings: dict[str, Any], notes: list[str]) -> None:
        """[`EvalTask.describe`][rewardkit.evaluation.tasks.EvalTask.describe]."""
        pass

    def prepare(self, config: "EvalConfig", notes: list[str]) -> None:
        """[`EvalTask.prepare`][rewardkit.evaluation.tasks.EvalTask.prepare]."""
        self.judge = _case_judge(self.bench, config)

    def score(self, run: str, pairs: Pairs, config: "EvalConfig") -> list[Any]:
        """[`EvalTask.score`][rewardkit.evaluation.tasks.EvalTask.score]."""
        return _score_cases(self.bench, pairs, self.judge, config)

    def summarize(
        self,
        records: Mapping[str, Sequence[Any]],
        extra: Mapping[str, Mapping[str, Any]],
        settings: dict[str, Any],
        notes: list[str],
        config: "EvalConfig",
    ) -> dict[str, Any]:
        """[`EvalTask.summarize`][rewardkit.evaluation.tasks.EvalTask.summarize]."""
        summary = summarize_cases(self.bench.kind, records)
        for name, fields in extra.items():
            summary["methods"][name].update(fields)
        summary["settings"], summary["notes"] = settings, notes
        return summary

    def write(
        self,
        out: Path,
        records: Mapping[str, Sequence[Any]],
        summary: dict[str, Any],
        extra: Mapping[str, Mapping[str, Any]],
        folders: Mapping[str, Path],
        config: "EvalConfig",
    ) -> dict[str, Any]:
        """[`EvalTask.write`][rewardkit.evaluation.tasks.EvalTask.write]."""
        _write_cases(out, records, summary, self.table(summary), summary["notes"], config.plots)
        return summary

    def table(self, summary: Mapping[str, Any]) -> str:
        """[`EvalTask.table`][rewardkit.evaluation.tasks.EvalTask.table]."""
        return cases_table(summary)


# --------------------------------------------------------------------------- helpers


def _case_judge(cases: CaseSet, config: "EvalConfig") -> Any:
    settings = config.judge
    if settings is None:
        raise ValueError(
            f"{cases.kind} cases are scored by an MLLM judge: pass judge=JudgeSettings(base_url=..., "
            "model=...) (CLI: --judge-url and --judge-model)"
        )
    client = settings.build_client(faithful=config.faithful)
    if cases.kind == "dual_ref":
        from rewardkit.rewards.judges import DualRefJudge

        return DualRefJudge(client)
    from rewardkit.rewards.judges import WeightedRefVIEScore

    return WeightedRefVIEScore(client, face_similarity=settings.face_similarity)


def _score_cases(
    cases: CaseSet, pairs: Sequence[tuple[Any, Path]], judge: Any, config: "EvalConfig"
) -> list[CaseScore]:
    from tqdm import tqdm

    from rewardkit.evaluation.cases import COMPONENTS
    from rewardkit.rewards.protocol import Reference as RewardReference
    from rewardkit.rewards.protocol import SampleContext

    faces_as_objects = config.judge is not None and config.judge.faces_as_objects
    out: list[CaseScore] = []
    bar = tqdm(total=len(pairs), desc=f"{cases.kind} judge", unit="img", disable=not config.progress)
    for start in range(0, len(pairs), JUDGE_CHUNK):
        chunk = pairs[start : start + JUDGE_CHUNK]
        contexts = []
        for case, _ in chunk:
            if isinstance(case, MicoCase):
                refs = tuple(
                    RewardReference(
                        to_tensor(load_rgb(cases.resolve(s.path))),
                        "subject",
                        s.name,
                        is_face=s.is_face and not faces_as_objects,
                    )
                    for s in case.sources
                )
                target = (to_tensor(load_rgb(cases.resolve(case.reference))),)
                contexts.append(SampleContext(prompt=case.prompt, targets=target, references=refs))
            else:
                refs = tuple(
                    RewardReference(to_tensor(load_rgb(p)), "subject") for p in cases.input_paths(case)
                )
                contexts.append(SampleContext(prompt=case.prompt, references=refs))
        result = judge([to_tensor(load_rgb(path)) for _, path in chunk], contexts)
        for i, (case, _) in enumerate(chunk):
            score = float(result.scores[i])
            components = {
                c: float(result.extras[c][i])
                for c in COMPONENTS[cases.kind]
                if c in result.extras and math.isfinite(float(result.extras[c][i]))
            }
            out.append(CaseScore(case.index, case.group, score if math.isfinite(score) else None, components))
        bar.update(len(chunk))
    bar.close()
    return out


def _write_cases(
    out: Path,
    records: Mapping[str, Sequence[CaseScore]],
    summary: dict[str, Any],
    table: str,
    notes: Sequence[str],
    plots: bool,
) -> None:

    out.mkdir(parents=True, exist_ok=True)
    for name, rows in records.items():
        (out / f"scores_{name}.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in rows))
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    title = {
        "mico": "MICo-style cases: Weighted-Ref-VIEScore (0–100)",
        "dual_ref": "Dual-reference cases: yes/no judge (0–1)",
    }[summary["benchmark"]]
    text = f"# Evaluation\n\n{title}\n\n{table}"
    if notes:
        text += "\n## Notes\n\n" + "".join(f"- {n}\n" for n in notes)
    text += "\n## Settings\n\n```json\n" + json.dumps(summary["settings"], indent=2) + "\n```\n"
    (out / "report.md").write_text(text, encoding="utf-8")
    if plots:
        plot_cases(summary, out / "scores_by_group.png")
