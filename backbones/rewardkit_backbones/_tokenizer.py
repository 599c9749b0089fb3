"""A byte-level Qwen2 tokenizer built in code, for the tiny offline checkpoints.

The real checkpoints ship their tokenizers; the tiny ones cannot download one, so this builds a
265-token byte-level BPE without merges (one token per byte, as the real Qwen tokenizers fall
back to), plus the special tokens the Qwen2.5-VL processor and the Qwen3 chat template use.
"""

from transformers import Qwen2Tokenizer

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "make_byte_tokenizer"]

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
