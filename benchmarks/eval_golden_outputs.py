"""Golden outputs of `rewardkit.evaluate` for refactors: run before and after, then `diff -r`.

Usage: `python benchmarks/eval_golden_outputs.py OUT_DIR [DATA_DIR]`. Writes the files of OmniRef-mini
(default offline metrics, faithful mode, the MLLM judge), MICo and dual-reference cases (judged by
the loopback test server of `tests/rewards/judges/server.py`). The data (default
`/tmp/rewardkit_golden_data`) is created once and reused, so the absolute paths recorded in
`settings` match between the two runs; the judge server's ephemeral port is replaced by `PORT`.
"""

import json
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import rewardkit
from rewardkit.evaluation import EncoderSpec, JudgeSettings, load_benchmark, load_eval_encoder
from tests.rewards.judges.server import serve, smart_answer


def client(server):
    return rewardkit.ChatClient(base_url=server.url, model="judge", backoff=0.0, max_retries=0)


def main() -> None:
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    data = Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/rewardkit_golden_data")
    if not data.exists():
        from rewardkit.data import write_omniref_mini

        data.mkdir(parents=True)
        meta = write_omniref_mini(data / "mini", n_train=0, n_test=12, seed=0, size=64)["test"]
        (data / "meta.txt").write_text(str(meta))
        bench = load_benchmark(meta)
        gt = data / "gt"
        gt.mkdir()
        for inst in bench:
            shutil.copy(bench.resolve(inst.target), gt / f"{inst.index}.png")
        cases = []
        for k, inst in enumerate(bench.instances[:3]):
            sources = []
            for j, ref in enumerate(inst.references_of("subject")[:2]):
                name = f"{k}_src{j}.png"
                shutil.copy(bench.resolve(ref.path), data / name)
                sources.append(name if j else {"path": name, "name": ref.subject_name})
            shutil.copy(bench.resolve(inst.target), data / f"{k}_ref.png")
            cases.append(
                {
                    "index": 10 + k,
                    "prompt": inst.prompt,
                    "sources": sources,
                    "reference": f"{k}_ref.png",
                    "face_sources": [1] if k == 2 else [],
                    "category": "Object" if k < 2 else "Human",
                }
            )
        (data / "mico.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
        gen = data / "gen"
        gen.mkdir()
        for k in range(3):
            shutil.copy(gt / f"{k}.png", gen / f"{10 + k}.png")
        dual = []
        for k, inst in enumerate(bench.instances[:4]):
            refs = inst.references_of("subject")[:2]
            dual.append(
                {
                    "index": k,
                    "prompt": inst.prompt,
                    "task": "animal" if k % 2 else "style",
                    "inputs": [str(bench.resolve(r.path)) for r in refs],
                }
            )
        (data / "dual.json").write_text(json.dumps(dual))
    meta = Path((data / "meta.txt").read_text())
    gt = data / "gt"
    sim = load_eval_encoder(
        EncoderSpec("offline_similarity", options=(("image_size", 64), ("device", "cpu")))
    )
    sty = load_eval_encoder(EncoderSpec("offline_style", options=(("image_size", 64), ("device", "cpu"))))
    fast = {"clip": sim, "dino": sim, "style": sty, "progress": False}
    # 1. OmniRef-mini, default offline metrics, two runs (gt and a shuffled one)
    shuf = data / "shuf"
    if not shuf.exists():
        shuf.mkdir()
        for i in range(12):
            shutil.copy(gt / f"{(i + 1) % 12}.png", shuf / f"{i}.png")
    rewardkit.evaluate({"gt": gt, "shuf": shuf}, meta, out_dir=out / "omniref", **fast)
    # 1b. faithful
    rewardkit.evaluate({"gt": gt}, meta, out_dir=out / "omniref_faithful", faithful=True, plots=False, **fast)
    # 2. OmniRef with the MLLM judge
    with serve(smart_answer) as server:
        rewardkit.evaluate(
            {"gt": gt},
            meta,
            out_dir=out / "omniref_mllm",
            metrics=("subject", "lighting", "mllm"),
            judge=JudgeSettings(client=client(server)),
            **fast,
        )
    # 3. MICo
    with serve(smart_answer) as server:
        rewardkit.evaluate(
            {"m": data / "gen"},
            data / "mico.jsonl",
            out_dir=out / "mico",
            judge=JudgeSettings(client=client(server), face_similarity=lambda s, g: 0.35),
            progress=False,
        )
    # 4. dual-ref
    with serve(smart_answer) as server:
        rewardkit.evaluate(
            {"m": gt},
            data / "dual.json",
            out_dir=out / "dual",
            judge=JudgeSettings(client=client(server)),
            progress=False,
        )
    # normalize the judge server's ephemeral port
    for p in out.rglob("*"):
        if p.suffix in (".json", ".md", ".jsonl"):
            t = p.read_text()
            p.write_text(re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", t))
    print("ok")


if __name__ == "__main__":
    main()
