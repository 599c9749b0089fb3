"""The tokenizers built in code for the tiny checkpoints."""

import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

pytest.importorskip("transformers")

from rewardkit_backbones._tokenizer import SPECIAL_TOKENS, make_byte_tokenizer, train_bpe_tokenizer

PREFIX = "<|im_start|>system\nDescribe the key features of the input image.<|im_end|>\n<|im_start|>user\n"
PROMPTS = [
    "Compose the red striped circle from image 1, the blue ring from image 2, lit like image 3.",
    "Compose the green dotted square from image 1, all in the sepia style of image 2.",
]
BPE = train_bpe_tokenizer([PREFIX] * 20 + PROMPTS * 20)
BYTES = make_byte_tokenizer()


def test_trained_vocabulary_makes_seen_words_single_tokens() -> None:
    text = PROMPTS[0]
    assert len(BPE(text).input_ids) < len(BYTES(text).input_ids) / 3
    tokens = BPE.convert_ids_to_tokens(BPE(text).input_ids)
    assert "Ġstriped" in tokens and "Ġimage" in tokens
    # the special tokens stay single tokens, as the Qwen2.5-VL processor needs
    for special in SPECIAL_TOKENS:
        assert BPE(special).input_ids == [BPE.convert_tokens_to_ids(special)]


@given(st.text(max_size=80))
@example("\U0002f800")  # a CJK compatibility ideograph: NFC maps it to U+4E3D
def test_decoding_inverts_encoding_up_to_nfc(text: str) -> None:
    # Like Qwen2's tokenizer, the trained one NFC-normalises its input first.
    assert BPE.decode(BPE(text).input_ids) == unicodedata.normalize("NFC", text)


def test_round_trips_through_save_pretrained(tmp_path: object) -> None:
    from pathlib import Path

    from transformers import AutoTokenizer

    folder = Path(str(tmp_path))
    BPE.save_pretrained(str(folder))
    loaded = AutoTokenizer.from_pretrained(str(folder))
    assert loaded(PROMPTS[1]).input_ids == BPE(PROMPTS[1]).input_ids
    assert len(loaded) == len(BPE)


def test_vocab_size_bounds_the_merges() -> None:
    small = train_bpe_tokenizer(PROMPTS * 20, vocab_size=300)
    assert len(small) <= 300 + len(SPECIAL_TOKENS) + 1
    assert len(small(PROMPTS[0]).input_ids) > len(BPE(PROMPTS[0]).input_ids)
