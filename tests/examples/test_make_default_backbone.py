"""examples/make_default_backbone.py: the prompt tokenizer fits the pipeline's template."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

spec = importlib.util.spec_from_file_location(
    "make_default_backbone", ROOT / "examples" / "make_default_backbone.py"
)
assert spec is not None and spec.loader is not None
maker = importlib.util.module_from_spec(spec)
sys.modules["make_default_backbone"] = maker
spec.loader.exec_module(maker)


def test_prompt_tokenizer_encodes_the_template_prefix_to_the_dropped_tokens() -> None:
    from diffusers import QwenImageEditPlusPipeline

    prompts = ["Place the red striped circle of image 1 on the brick wall of image 2"] * 10
    tokenizer = maker.prompt_tokenizer(prompts)
    template = QwenImageEditPlusPipeline(
        scheduler=None, vae=None, text_encoder=None, tokenizer=None, processor=None, transformer=None
    ).prompt_template_encode
    prefix, suffix = template.split("{}")
    assert len(tokenizer(prefix).input_ids) == 64
    # the prompt's own words are whole tokens: far fewer tokens than bytes
    ids = tokenizer(prompts[0]).input_ids
    assert 0 < len(ids) <= len(prompts[0].split()) + 2 < len(prompts[0].encode())
    assert tokenizer.decode(tokenizer(prefix + prompts[0] + suffix).input_ids) == prefix + prompts[0] + suffix


def test_transformer_pretraining_is_seeded_and_batches_its_noise_levels() -> None:
    import numpy as np
    import torch

    import rewardkit
    from rewardkit.data.omniref_mini import make_instance

    instances = [make_instance("subject_bg", 3, np.random.default_rng(i)) for i in range(2)]
    embedded = ROOT / "examples" / "assets" / "dyref-tiny-qwen"

    def pretrain(noise_draws: int) -> tuple[list[float], torch.Tensor, int]:
        backbone = rewardkit.load_backbone("qwen-image-edit-2511", str(embedded), device="cpu")
        before = torch.cat([p.detach().flatten().clone() for p in backbone.transformer.parameters()])
        calls = 0
        velocity = backbone.velocity

        def counted(latents: torch.Tensor, sigma: torch.Tensor, cond: object) -> torch.Tensor:
            nonlocal calls
            calls += 1
            assert latents.shape[0] == sigma.shape[0] == noise_draws
            return velocity(latents, sigma, cond)

        backbone.velocity = counted
        curve = maker.train_transformer(
            backbone, instances, steps=3, accumulate=2, lr=1e-3, seed=0, noise_draws=noise_draws
        )
        after = torch.cat([p.detach().flatten() for p in backbone.transformer.parameters()])
        return curve, after - before, calls

    curve, change, calls = pretrain(4)
    again, change_again, _ = pretrain(4)
    assert calls == 3 * 2  # one forward per scene, whatever the number of noise levels
    assert len(curve) == 3 and all(np.isfinite(curve)) and float(change.abs().max()) > 0
    assert curve == again and torch.equal(change, change_again)
    single, _, _ = pretrain(1)
    assert single != curve


def test_reusing_a_codec_trains_only_a_fresh_transformer(tmp_path: Path) -> None:
    import json

    import torch
    from safetensors.torch import load_file

    embedded = ROOT / "examples" / "assets" / "dyref-tiny-qwen"
    out = tmp_path / "base"
    argv = ["--scenes", "3", "--steps", "2", "--accumulate", "1", "--noise-draws", "2"]
    assert maker.main([*argv, "--reuse-codec", str(embedded), "--out", str(out)]) == 0
    record = json.loads((out / "pretraining.json").read_text())
    assert (
        record["codec"] == str(embedded) and record["noise_draws"] == 2 and record["transformer_steps"] == 2
    )

    def weights(folder: Path, part: str) -> dict[str, torch.Tensor]:
        return load_file(str(next((folder / part).glob("*.safetensors"))))

    for part in ("vae", "text_encoder"):  # the codec and prompt side are the source's
        source, copy = weights(embedded, part), weights(out, part)
        assert source.keys() == copy.keys() and all(torch.equal(source[k], copy[k]) for k in source)
    source, fresh = weights(embedded, "transformer"), weights(out, "transformer")
    assert source.keys() == fresh.keys() and not all(torch.equal(source[k], fresh[k]) for k in source)
    import rewardkit

    backbone = rewardkit.load_backbone("qwen-image-edit-2511", str(out), device="cpu")
    assert backbone.name == "qwen-image-edit-2511"


def test_a_continued_phase_starts_from_given_weights_and_logs_its_psnr(tmp_path: Path) -> None:
    import json

    import torch
    from safetensors.torch import load_file

    embedded = ROOT / "examples" / "assets" / "dyref-tiny-qwen"
    out = tmp_path / "phase"
    argv = ["--scenes", "2", "--steps", "10", "--stop-after", "2", "--accumulate", "1", "--eval-every", "1"]
    argv += ["--eval-scenes", "2", "--categories", "subject", "--max-refs", "2"]
    argv += ["--reuse-codec", str(embedded), "--init-transformer", str(embedded / "transformer")]
    assert maker.main([*argv, "--out", str(out)]) == 0
    log = [json.loads(line) for line in (out / "pretraining_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2]  # every step, and the last one once
    assert all(0 < entry["psnr"] < 100 and entry["psnr"] == entry["psnr_few_refs"] for entry in log)
    record = json.loads((out / "pretraining.json").read_text())
    assert record["stop_after"] == 2 and record["categories"] == ["subject"] and record["max_references"] == 2
    assert record["held_out"] == log[-1]

    source, trained = (
        load_file(str(next((f / "transformer").glob("*.safetensors")))) for f in (embedded, out)
    )
    assert source.keys() == trained.keys()  # the given architecture, not the script's default
    # two small steps from the given weights: close to them, but moved
    assert not all(torch.equal(source[k], trained[k]) for k in source)
    assert max(float((source[k] - trained[k]).abs().max()) for k in source) < 0.05


def test_pretraining_pairs_reject_unknown_categories_and_empty_sets() -> None:
    import pytest

    assert maker.pretraining_pairs(("subject",), 3) == [("subject", 2), ("subject", 3)]
    assert all("lighting" not in c for c, _ in maker.pretraining_pairs())
    with pytest.raises(ValueError, match="unknown categories"):
        maker.pretraining_pairs(("subjects",), 3)
    with pytest.raises(ValueError, match="no \\(category"):
        maker.pretraining_pairs(("subject_pose_bg",), 3)


def test_bad_flags_end_in_one_line_before_anything_is_written(tmp_path: Path, capsys) -> None:
    import pytest

    out = tmp_path / "out"
    for argv, culprit in (
        (["--categories", "subjects"], "unknown categories ['subjects']"),
        (["--init-transformer", str(tmp_path / "nope")], "--init-transformer"),
        (["--reuse-codec", str(tmp_path)], "--reuse-codec"),
    ):
        with pytest.raises(SystemExit) as info:
            maker.main([*argv, "--out", str(out)])
        assert info.value.code == 2
        assert culprit in capsys.readouterr().err
    assert not out.exists()
