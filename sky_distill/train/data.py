"""Training data: chat-template encoding with response-only labels, packing, and batches.

Pure functions, no I/O. A conversation becomes `input_ids` plus `labels` that are
`IGNORE_INDEX` everywhere except the final assistant turn: its text and the token that ends
the turn (EOS, learned so the student stops), and nothing after it.

Packed rows restart `position_ids` at every sequence; with no attention mask and no KV cache
(`use_cache=False`), transformers turns that into a block-diagonal causal mask (and flash
attention into variable-length attention), so packed neighbours never attend to each other.
The first token of every sequence has no label, so no loss crosses a packed boundary either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sky_distill.errors import SkyDistillError
from sky_distill.train.batching import best_fit_decreasing

IGNORE_INDEX = -100


class TemplateError(SkyDistillError, ValueError):
    """The chat template does not render the prompt as a prefix of the full conversation."""


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]
    truncated_tokens: int = 0  # tokens cut from the end to fit max_seq_len
    teacher: Any = None  # offline distillation: `teacher_signal.TeacherRows`, one row per target token

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_target_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)

    @property
    def response_ids(self) -> list[int]:
        """The target tokens, in order."""
        return [label for label in self.labels if label != IGNORE_INDEX]


def _render_ids(tokenizer: Any, messages: Sequence[dict[str, str]], add_generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(
        list(messages), tokenize=True, add_generation_prompt=add_generation_prompt, return_dict=False
    )
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def encode_conversation(
    tokenizer: Any,
    messages: Sequence[dict[str, str]],
    max_seq_len: int | None = None,
    end_of_turn: set[int] | None = None,
) -> EncodedExample:
    """Encode a conversation whose last turn is the assistant response to learn.

    The prompt is the template applied to the earlier turns with the generation prompt; it
    must be a prefix of the template applied to the whole conversation. The response runs
    to the last end-of-turn token the template writes (`end_of_turn`, default EOS); what
    follows it (ChatML's newline) is dropped, since the model never sees it. If the template
    closes the turn with no such token, EOS is appended. Over-long examples are cut at the end.
    """
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("a training conversation must end with an assistant turn")
    stops = end_of_turn if end_of_turn is not None else {tokenizer.eos_token_id}
    prompt_ids = _render_ids(tokenizer, messages[:-1], add_generation_prompt=True)
    full_ids = _render_ids(tokenizer, messages, add_generation_prompt=False)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise TemplateError(
            "the chat template does not render the prompt as a prefix of the full conversation; "
            "response-only labels cannot be placed"
        )
    response_ids = full_ids[len(prompt_ids) :]
    closing = [index for index, token in enumerate(response_ids) if token in stops]
    if closing:
        response_ids = response_ids[: closing[-1] + 1]
    else:
        response_ids = [*response_ids, tokenizer.eos_token_id]
    input_ids = prompt_ids + response_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + response_ids
    labels[0] = IGNORE_INDEX  # nothing predicts a sequence's first token (keeps packed rows apart)
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
    length: int = 0

    def add(self, example: EncodedExample) -> None:
        self.examples.append(example)
        self.length += len(example)

    @property
    def num_target_tokens(self) -> int:
        return sum(example.num_target_tokens for example in self.examples)


def pack_examples(examples: Sequence[EncodedExample], capacity: int) -> list[PackedRow]:
    """Best-fit-decreasing bin packing: longest first, each into the fullest row it fits in.

    O(n log n) with a sorted list of (free space, row); rows come back in the order they were
    opened, so packing is deterministic.
    """
    return rows_of(examples, best_fit_decreasing([len(example) for example in examples], capacity), capacity)


def rows_of(examples: Sequence[EncodedExample], bins: Sequence[Sequence[int]], capacity: int) -> list[PackedRow]:
    """Packed rows holding the examples each bin names (indices into `examples`)."""
    rows = []
    for indices in bins:
        row = PackedRow(capacity)
        for index in indices:
            row.add(examples[index])
        rows.append(row)
    return rows


def single_rows(examples: Sequence[EncodedExample], capacity: int) -> list[PackedRow]:
    """One example per row (no packing), in input order."""
    rows = []
    for example in examples:
        row = PackedRow(capacity)
        row.add(example)
        rows.append(row)
    return rows


def padding_fraction(row_lengths: Sequence[int], padded_lengths: Sequence[int]) -> float:
    """The share of computed positions that are padding."""
    total = sum(padded_lengths)
    return 0.0 if total == 0 else 1.0 - sum(row_lengths) / total


def collate_teacher(examples: Sequence[EncodedExample]) -> dict[str, torch.Tensor]:
    """Stored teacher rows of a micro batch's examples, in the order of `losses.target_positions`
    (row-major: rows, then examples in a row, then positions); empty if the examples have none."""
    if all(example.teacher is None for example in examples):
        return {}
    if any(example.teacher is None for example in examples):
        raise ValueError("some examples of a micro batch have teacher rows and some do not")
    import numpy as np

    ids = np.concatenate([example.teacher.ids for example in examples])
    logprobs = np.concatenate([example.teacher.logprobs for example in examples])
    return {"teacher_ids": torch.from_numpy(ids.astype(np.int64)), "teacher_logprobs": torch.from_numpy(logprobs)}


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
    teacher = collate_teacher([example for row in rows for example in row.examples])
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, **teacher}


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
    teacher = collate_teacher(examples)
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask, **teacher}


def flatten_rows(rows: Sequence[PackedRow]) -> PackedRow:
    """All examples of several packed rows as one row: a padding-free micro batch.

    Only for attention that takes sequence boundaries from the position ids without building
    a dense mask (flash attention's variable-length kernels); SDPA and eager attention would
    build a mask quadratic in the whole micro batch.
    """
    flat = PackedRow(sum(row.capacity for row in rows))
    for row in rows:
        for example in row.examples:
            flat.add(example)
    return flat


def collate_rows(
    rows: Sequence[PackedRow], pad_id: int, packing: bool, padding_free: bool = False
) -> dict[str, torch.Tensor]:
    """A micro batch of rows: packed rows with restarting positions (one row if `padding_free`),
    or padded single examples with an attention mask."""
    if packing:
        return collate_packed([flatten_rows(rows)] if padding_free else rows, pad_id)
    return collate_padded([row.examples[0] for row in rows], pad_id)
