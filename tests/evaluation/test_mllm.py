"""Judge-backed evaluation against a real loopback HTTP server: OmniRef MLLM, MICo, dual-reference."""

import json
import math
import shutil
from pathlib import Path

import pytest

import rewardkit
from rewardkit.evaluation import JudgeSettings, load_benchmark, load_cases
from rewardkit.evaluation.report import MLLM_DIMENSIONS
from tests.rewards.judges.server import chat, prompt_text, serve, smart_answer

DIMS = ("text_adherence", "subject_consistency", "style_consistency", "lighting_consistency",
        "background_consistency", "aesthetic_quality")  # fmt: skip


def client(server):
    return rewardkit.ChatClient(base_url=server.url, model="judge", backoff=0.0, max_retries=0)


def verdict(k: int) -> dict:
    """Instance k's canned verdict: dimension j scores k + j/2 (every dimension, even N/A ones)."""
    return {d: {"score": min(10.0, k + j / 2), "reasoning": "."} for j, d in enumerate(DIMS)}


def test_omniref_mllm_columns_are_formed_like_the_paper(mini, gt_folder) -> None:
    bench = load_benchmark(mini)
    prompts = {inst.prompt: inst.index for inst in bench}

    def responder(body, count):
        index = prompts[prompt_text(body).split("Text prompt: ")[1].split("\n")[0]]
        if index == 2:
            return chat("I would rather not say.")  # unreadable: a counted failure, not a zero
        return chat(json.dumps(verdict(index)))

    with serve(responder) as server:
        report = rewardkit.evaluate(
            {"m": gt_folder},
            mini,
            metrics=("mllm",),
            judge=JudgeSettings(client=client(server)),
            progress=False,
        )
        bodies = list(server.requests)
    assert len(bodies) == 12 and {b["temperature"] for b in bodies} == {0.0}
    mllm = report.summary["methods"]["m"]["mllm"]
    needs = {"subject_consistency": "subject", "style_consistency": "style",
             "lighting_consistency": "lighting", "background_consistency": "background"}  # fmt: skip
    for j, dim in enumerate(DIMS):
        applicable = [i.index for i in bench if i.index != 2 and (dim not in needs or needs[dim] in i.types)]
        want = sum(min(10.0, k + j / 2) for k in applicable) / len(applicable)
        assert mllm[dim] == pytest.approx(want), dim  # mean over the items the dimension applies to
    assert mllm["avg"] == pytest.approx(sum(mllm[d] for d in MLLM_DIMENSIONS) / 6)  # mean of the 6 means
    assert report.summary["methods"]["m"]["failures"] == {"judge": 1}
    record = next(r for r in report.records["m"] if r.index == 2)
    assert record.mllm == {} and record.failures == {"judge": 1}
    assert "**MLLM Avg**" in report.table and "M-Subject" in report.table
    assert report.summary["settings"]["judge"]["temperature"] == 0.0


def test_faithful_judging_uses_temperature_0_9_and_trusts_the_judge(mini, gt_folder) -> None:
    with serve(lambda body, n: chat(json.dumps(verdict(4)))) as server:
        report = rewardkit.evaluate(
            {"m": gt_folder}, mini, metrics=("mllm",), faithful=True, limit=2,
            judge=JudgeSettings(base_url=server.url, model="judge"), progress=False,
        )  # fmt: skip
        temperatures = {b["temperature"] for b in server.requests}
    assert temperatures == {0.9}
    # "model" applicability: the judge scored lighting (4 + 3/2) on instances without a lighting
    # reference, and the reference script counted it.
    assert report.summary["methods"]["m"]["mllm"]["lighting_consistency"] == pytest.approx(5.5)


def _mico_cases(mini: Path, root: Path) -> Path:
    """Three MICo-style cases built from OmniRef-mini images (paths relative to ``root``)."""
    bench = load_benchmark(mini)
    cases = []
    for k, inst in enumerate(bench.instances[:3]):
        sources = []
        for j, ref in enumerate(inst.references_of("subject")[:2]):
            name = f"{k}_src{j}.png"
            shutil.copy(bench.resolve(ref.path), root / name)
            sources.append(name if j else {"path": name, "name": ref.subject_name})
        shutil.copy(bench.resolve(inst.target), root / f"{k}_ref.png")
        cases.append({"index": 10 + k, "prompt": inst.prompt, "sources": sources, "reference": f"{k}_ref.png",
                      "face_sources": [1] if k == 2 else [], "category": "Object" if k < 2 else "Human"})  # fmt: skip
    path = root / "mico.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    return path


def face_similarity(source, generated) -> float:
    return 0.35  # graded 0.7


def test_mico_cases_score_weighted_ref_viescore(mini, gt_folder, tmp_path) -> None:
    cases = _mico_cases(mini, tmp_path)
    assert load_cases(cases).kind == "mico"
    images = tmp_path / "gen"
    images.mkdir()
    for k in range(3):
        shutil.copy(gt_folder / f"{k}.png", images / f"{10 + k}.png")
    with serve(smart_answer) as server:
        judge = JudgeSettings(client=client(server), face_similarity=face_similarity)
        report = rewardkit.evaluate(
            {"m": images}, cases, out_dir=tmp_path / "out", judge=judge, progress=False
        )
    # smart_answer: PF 9, SR 4 → SC 6; naturalness = artifacts = 8 → PQ 8; presence "yes" → 1
    scores = {r.index: r.score for r in report.records["m"]}
    assert scores == {10: pytest.approx(48.0), 11: pytest.approx(48.0), 12: pytest.approx((1 + 0.7) / 2 * 48)}
    method = report.summary["methods"]["m"]
    assert method["by_group"] == {"Object": pytest.approx(48.0), "Human": pytest.approx(40.8)}
    assert method["score"] == pytest.approx((48 + 48 + 40.8) / 3)
    assert method["components"]["SC"] == pytest.approx(6.0) and method["components"]["PQ"] == pytest.approx(
        8.0
    )
    assert report.summary["benchmark"] == "mico" and report.summary["scale"] == 100.0
    out = tmp_path / "out"
    assert "| m | **45.6** | 48.0 | 40.8 | 3/3 |" in (out / "report.md").read_text()
    assert (out / "scores_by_group.png").stat().st_size > 1000
    assert len((out / "scores_m.jsonl").read_text().splitlines()) == 3


def test_mico_face_sources_need_a_face_similarity_or_an_explicit_fallback(mini, gt_folder, tmp_path) -> None:
    cases = _mico_cases(mini, tmp_path)
    images = tmp_path / "gen"
    images.mkdir()
    for k in range(3):
        shutil.copy(gt_folder / f"{k}.png", images / f"{10 + k}.png")
    with serve(smart_answer) as server:
        with pytest.raises(ValueError, match="face_similarity"):
            rewardkit.evaluate(
                {"m": images}, cases, judge=JudgeSettings(client=client(server)), progress=False
            )
        fallback = JudgeSettings(client=client(server), faces_as_objects=True)
        report = rewardkit.evaluate({"m": images}, cases, judge=fallback, progress=False)
    assert [r.score for r in report.records["m"]] == pytest.approx([48.0, 48.0, 48.0])
    assert any("face" in note for note in report.summary["notes"])
    with pytest.raises(ValueError, match="judge"):
        rewardkit.evaluate({"m": images}, cases)


def test_dual_reference_cases_score_the_yes_no_judge(mini, gt_folder, tmp_path) -> None:
    bench = load_benchmark(mini)
    cases = []
    for k, inst in enumerate(bench.instances[:4]):
        refs = inst.references_of("subject")[:2]
        cases.append({"index": k, "prompt": inst.prompt, "task": "animal" if k % 2 else "style",
                      "inputs": [str(bench.resolve(r.path)) for r in refs]})  # fmt: skip
    path = tmp_path / "dual.json"
    path.write_text(json.dumps(cases))

    def responder(body, count):
        if "Questions:" in prompt_text(body) and bench.instances[3].prompt in prompt_text(body):
            return chat("no idea")  # case 3 unreadable
        return smart_answer(body, count)

    with serve(responder) as server:
        report = rewardkit.evaluate({"m": gt_folder}, path, judge=JudgeSettings(client=client(server)),
                                    progress=False, allow_missing=True)  # fmt: skip
    method = report.summary["methods"]["m"]
    assert report.summary["benchmark"] == "dual_ref"
    # smart_answer: instruction yes, consistency no, realism yes → 2/3
    assert method["score"] == pytest.approx(2 / 3) and method["by_group"]["style"] == pytest.approx(2 / 3)
    assert method["by_group"]["animal"] == pytest.approx(2 / 3)  # case 3 left out, not zeroed
    assert method["components"] == {
        "instruction_following": 1.0,
        "reference_consistency": 0.0,
        "realism": 1.0,
    }
    assert method["n_scored"] == 3 and method["failures"] == {"judge": 1}
    assert math.isclose(sum(1 for r in report.records["m"] if r.score is None), 1)
