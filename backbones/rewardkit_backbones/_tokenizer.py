"""A byte-level Qwen2 tokenizer built in code, for the tiny offline checkpoints.

The real checkpoints ship their tokenizers; the tiny ones cannot download one, so this builds a
265-token byte-level BPE without merges (one token per byte, as the real Qwen tokenizers fall
back to), plus the special tokens the Qwen2.5-VL processor and the Qwen3 chat template use.
"""

import json
from collections.abc import Sequence

from transformers import Qwen2Tokenizer

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "make_byte_tokenizer", "train_bpe_tokenizer"]

# Renders a chat like Qwen's template, including the `enable_thinking=False` empty think block
# that FLUX.2's prompt encoder requests.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)

SPECIAL_TOKENS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<think>",
    "</think>",
)


def make_byte_tokenizer() -> Qwen2Tokenizer:
    """A `Qwen2Tokenizer` with 256 byte tokens, ``<|endoftext|>`` (id 256) and the special tokens.

    Returns:
        The tokenizer (265 tokens); ``save_pretrained`` / ``from_pretrained`` round-trip it.
    """
    from tokenizers import pre_tokenizers

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], chat_template=CHAT_TEMPLATE)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return tokenizer


def train_bpe_tokenizer(corpus: Sequence[str], *, vocab_size: int = 4096) -> Qwen2Tokenizer:
    """A byte-level BPE `Qwen2Tokenizer` whose merges are learned from ``corpus``.

    Words seen often enough become single tokens, as in the real Qwen vocabulary, so prompts
    encode to about one token per word instead of one per byte (a several-fold shorter text
    sequence for the tiny backbones); unseen text still encodes byte by byte, and decoding
    inverts encoding for any text. Special tokens as in :func:`make_byte_tokenizer`.

    Args:
        corpus: training texts (e.g. the prompt template and the dataset's prompts).
        vocab_size: upper bound of the learned vocabulary (merges stop earlier when no pair
            repeats).

    Returns:
        The tokenizer; ``save_pretrained`` / ``from_pretrained`` round-trip it.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    specials = ["<|endoftext|>", *SPECIAL_TOKENS]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=specials,
        show_progress=False,
    )
    bpe.train_from_iterator(list(corpus), trainer)
    model = json.loads(bpe.to_str())["model"]
    learned = sorted((i, tok) for tok, i in model["vocab"].items() if tok not in specials)
    vocab = {tok: i for i, (_, tok) in enumerate(learned)}
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, chat_template=CHAT_TEMPLATE)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return tokenizer
