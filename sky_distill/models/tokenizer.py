"""A byte-level tokenizer built in code, for tiny teachers and students (no Hub download).

Every UTF-8 byte is one token, so any text round-trips exactly; a few added tokens carry the
ChatML chat format and the `<think>` tags. Saved with `save_pretrained`, it loads through
`AutoTokenizer` in transformers and in vLLM like any Hub tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tokenizers.pre_tokenizers import ByteLevel
from transformers import PreTrainedTokenizerFast

END_OF_TEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END)
THINK_TOKENS = ("<think>", "</think>")

# ChatML, as Qwen2.5 writes it. `{% generation %}` marks assistant text so transformers can
# return the assistant-token mask that the training stage puts the loss on.
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def build_byte_tokenizer(model_max_length: int = 2048) -> PreTrainedTokenizerFast:
    """Return a byte-level tokenizer with ChatML special tokens and think tags."""
    byte_alphabet = sorted(ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(byte_alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.add_special_tokens(
        {
            "eos_token": IM_END,
            "pad_token": END_OF_TEXT,
            "additional_special_tokens": [IM_START],
        }
    )
    tokenizer.add_tokens(list(THINK_TOKENS), special_tokens=False)
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def save_byte_tokenizer(directory: str | Path, model_max_length: int = 2048) -> PreTrainedTokenizerFast:
    """Build the byte tokenizer and save it (with its chat template) into `directory`."""
    tokenizer = build_byte_tokenizer(model_max_length)
    tokenizer.save_pretrained(str(directory))
    return tokenizer
