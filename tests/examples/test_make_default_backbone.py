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
