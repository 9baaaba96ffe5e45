"""Training data: chat-template encoding with response-only labels, packing, and batches.

Pure functions, no I/O: a conversation becomes `input_ids` plus `labels` that are
`IGNORE_INDEX` everywhere except the final assistant turn (its text and its end-of-turn token).
Packed rows restart `position_ids` at every sequence, which transformers turns into a
block-diagonal causal mask, so packed neighbours never attend to each other.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sky_distill.errors import SkyDistillError

IGNORE_INDEX = -100


class TemplateError(SkyDistillError, ValueError):
    """The chat template does not render the prompt as a prefix of the full conversation."""


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]
    truncated_tokens: int = 0  # tokens cut from the end to fit max_seq_len

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_target_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def _render_ids(tokenizer: Any, messages: Sequence[dict[str, str]], add_generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(
        list(messages), tokenize=True, add_generation_prompt=add_generation_prompt, return_dict=False
    )
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def encode_conversation(
    tokenizer: Any, messages: Sequence[dict[str, str]], max_seq_len: int | None = None
) -> EncodedExample:
    """Encode a conversation whose last turn is the assistant response to learn.

    Labels cover the response and its end-of-turn (EOS) token; anything the template writes
    after that EOS (ChatML's trailing newline) is dropped, since the model never sees it.
    """
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("a training conversation must end with an assistant turn")
    prompt_ids = _render_ids(tokenizer, messages[:-1], add_generation_prompt=True)
    full_ids = _render_ids(tokenizer, messages, add_generation_prompt=False)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise TemplateError(
            "the chat template does not render the prompt as a prefix of the full conversation; "
            "response-only labels cannot be placed"
        )
    response_ids = full_ids[len(prompt_ids) :]
    eos_id = tokenizer.eos_token_id
    if eos_id in response_ids:
        response_ids = response_ids[: response_ids.index(eos_id) + 1]
    else:
        response_ids = [*response_ids, eos_id]
    input_ids = prompt_ids + response_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + response_ids
    truncated = 0
    if max_seq_len is not None and len(input_ids) > max_seq_len:
        truncated = len(input_ids) - max_seq_len
        input_ids, labels = input_ids[:max_seq_len], labels[:max_seq_len]
    return EncodedExample(input_ids, labels, truncated)


@dataclass
class PackedRow:
    """Several examples laid end to end in one row of at most `capacity` tokens."""

    capacity: int
    examples: list[EncodedExample] = field(default_factory=list)

    @property
    def length(self) -> int:
        return sum(len(example) for example in self.examples)


def pack_examples(examples: Sequence[EncodedExample], capacity: int) -> list[PackedRow]:
    """Best-fit-decreasing bin packing: each example goes into the fullest row it fits in.

    Rows come back in a fixed order (the order they were opened), so packing is deterministic.
    """
    rows: list[PackedRow] = []
    free_space: list[tuple[int, int]] = []  # (free tokens, row index), a min-heap
    for example in sorted(examples, key=len, reverse=True):
        if len(example) > capacity:
            raise ValueError(f"an example of {len(example)} tokens exceeds the row capacity {capacity}")
        skipped = []
        placed = False
        while free_space:
            free, index = heapq.heappop(free_space)
            if free >= len(example):
                rows[index].examples.append(example)
                heapq.heappush(free_space, (free - len(example), index))
                placed = True
                break
            skipped.append((free, index))
        for item in skipped:
            heapq.heappush(free_space, item)
        if not placed:
            rows.append(PackedRow(capacity, [example]))
            heapq.heappush(free_space, (capacity - len(example), len(rows) - 1))
    return rows


def padding_fraction(row_lengths: Sequence[int], padded_lengths: Sequence[int]) -> float:
    total = sum(padded_lengths)
    return 0.0 if total == 0 else 1.0 - sum(row_lengths) / total


def collate_packed(rows: Sequence[PackedRow], pad_id: int) -> dict[str, torch.Tensor]:
    """Tensors for packed rows: position ids restart per example; padding is its own block."""
    width = max(row.length for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    for row_index, row in enumerate(rows):
        offset = 0
        for example in row.examples:
            end = offset + len(example)
            input_ids[row_index, offset:end] = torch.tensor(example.input_ids)
            labels[row_index, offset:end] = torch.tensor(example.labels)
            position_ids[row_index, offset:end] = torch.arange(len(example))
            offset = end
        position_ids[row_index, offset:] = torch.arange(width - offset)
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


def collate_padded(examples: Sequence[EncodedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Tensors for unpacked examples, right-padded, with an attention mask."""
    width = max(len(example) for example in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for index, example in enumerate(examples):
        input_ids[index, : len(example)] = torch.tensor(example.input_ids)
        labels[index, : len(example)] = torch.tensor(example.labels)
        attention_mask[index, : len(example)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
