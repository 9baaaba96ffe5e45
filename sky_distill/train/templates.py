"""Chat templates per model family, and the token that ends an assistant turn.

A model's own tokenizer normally carries its chat template (Qwen2.5's ChatML, Llama 3's
header format) and the trainer uses it as it is (`train.chat_template: auto`). For a base
model without one, or to train a tiny model in a family's format, a template can be named
here: `chatml` (Qwen2.5 style) or `llama3` (Llama 3 style). Both are written for this project
and mark assistant text with `{% generation %}` so transformers can return assistant masks.
"""

from __future__ import annotations

from typing import Any

from sky_distill.errors import SkyDistillError
from sky_distill.models.tokenizer import CHATML_TEMPLATE, build_byte_tokenizer

# Llama 3 style: <|begin_of_text|>, then per turn a role header, a blank line, the text and
# <|eot_id|>. Whitespace around the text is kept as it is: the trainer must see the exact
# bytes the model will be prompted with.
LLAMA3_BEGIN = "<|begin_of_text|>"
LLAMA3_HEADER_START = "<|start_header_id|>"
LLAMA3_HEADER_END = "<|end_header_id|>"
LLAMA3_EOT = "<|eot_id|>"
LLAMA3_END_OF_TEXT = "<|end_of_text|>"
LLAMA3_TEMPLATE = (
    "{{- '<|begin_of_text|>' -}}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{- message['content'] + '<|eot_id|>' -}}{% endgeneration %}"
    "{%- else -%}"
    "{{- message['content'] + '<|eot_id|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)

TEMPLATES = {"chatml": CHATML_TEMPLATE, "llama3": LLAMA3_TEMPLATE}
TEMPLATE_SPECIAL_TOKENS = {
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "llama3": (LLAMA3_BEGIN, LLAMA3_HEADER_START, LLAMA3_HEADER_END, LLAMA3_EOT),
}
# Tokens that close an assistant turn in the families we train (and a few common others).
END_OF_TURN_TOKENS = ("<|im_end|>", LLAMA3_EOT, "<|end|>", "<end_of_turn>")


class ChatTemplateError(SkyDistillError, ValueError):
    """The tokenizer has no usable chat template for training."""


def apply_chat_template_choice(tokenizer: Any, choice: str) -> Any:
    """Set the named template on `tokenizer` (`auto` keeps its own); check the tokens exist."""
    if choice == "auto":
        if not getattr(tokenizer, "chat_template", None):
            raise ChatTemplateError(
                "the tokenizer has no chat template; set train.chat_template to one of " + ", ".join(sorted(TEMPLATES))
            )
        return tokenizer
    if choice not in TEMPLATES:
        raise ChatTemplateError(f"train.chat_template {choice!r} is not one of auto, {', '.join(sorted(TEMPLATES))}")
    vocab = tokenizer.get_vocab()
    missing = [token for token in TEMPLATE_SPECIAL_TOKENS[choice] if token not in vocab]
    if missing:
        raise ChatTemplateError(
            f"train.chat_template={choice} needs the tokens {missing}, which the tokenizer does not have"
        )
    tokenizer.chat_template = TEMPLATES[choice]
    return tokenizer


def end_of_turn_ids(tokenizer: Any) -> set[int]:
    """Ids that may end an assistant turn: EOS and the known end-of-turn tokens in the vocab."""
    vocab = tokenizer.get_vocab()
    ids = {vocab[token] for token in END_OF_TURN_TOKENS if token in vocab}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def build_llama3_byte_tokenizer(model_max_length: int = 2048) -> Any:
    """The byte tokenizer with Llama 3 special tokens and template, for tiny Llama-family models."""
    tokenizer = build_byte_tokenizer(model_max_length)
    tokenizer.add_special_tokens(
        {
            "bos_token": LLAMA3_BEGIN,
            "eos_token": LLAMA3_EOT,
            "additional_special_tokens": [LLAMA3_HEADER_START, LLAMA3_HEADER_END, LLAMA3_END_OF_TEXT],
        }
    )
    tokenizer.chat_template = LLAMA3_TEMPLATE
    return tokenizer
