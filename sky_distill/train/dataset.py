"""Reading SFT files into encoded examples, with every bad or cut record counted and named."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sky_distill.records import RecordError, SFTExample, iter_jsonl
from sky_distill.train.data import EncodedExample, encode_conversation

MAX_REPORTED_ERRORS = 20


@dataclass
class DataReport:
    """What became of the input records: kept, rejected (with where and why), truncated."""

    records: int = 0
    kept: int = 0
    rejected: int = 0
    truncated_examples: int = 0
    truncated_tokens: int = 0
    tokens: int = 0
    target_tokens: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, error: RecordError) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(str(error))

    def as_dict(self) -> dict[str, Any]:
        return {
            "train/data/records": self.records,
            "train/data/kept": self.kept,
            "train/data/rejected": self.rejected,
            "train/data/truncated_examples": self.truncated_examples,
            "train/data/truncated_tokens": self.truncated_tokens,
            "train/data/tokens": self.tokens,
            "train/data/target_tokens": self.target_tokens,
            "train/data/errors": self.errors,
        }


def _check_example(example: SFTExample, path: str, line: int) -> RecordError | None:
    if not example.messages or example.messages[-1].role != "assistant":
        return RecordError(path, line, "messages", "the last message must be the assistant response")
    if not example.messages[-1].content.strip():
        return RecordError(path, line, f"messages.{len(example.messages) - 1}.content", "empty response")
    return None


def load_sft_examples(
    files: Sequence[str | Path], tokenizer: Any, max_seq_len: int
) -> tuple[list[EncodedExample], DataReport]:
    """Encode every valid record of the SFT files; over-long ones are cut at `max_seq_len`."""
    report = DataReport()
    examples: list[EncodedExample] = []
    for path in files:
        for line, item in iter_jsonl(path, SFTExample):
            report.records += 1
            if isinstance(item, RecordError):
                report.reject(item)
                continue
            problem = _check_example(item, str(path), line)
            if problem:
                report.reject(problem)
                continue
            messages = [message.model_dump() for message in item.messages]
            encoded = encode_conversation(tokenizer, messages, max_seq_len)
            if encoded.num_target_tokens == 0:
                message = f"no response tokens left within max_seq_len {max_seq_len}"
                report.reject(RecordError(str(path), line, "messages", message))
                continue
            if encoded.truncated_tokens:
                report.truncated_examples += 1
                report.truncated_tokens += encoded.truncated_tokens
            report.kept += 1
            report.tokens += len(encoded)
            report.target_tokens += encoded.num_target_tokens
            examples.append(encoded)
    return examples, report
