"""Reading SFT files into encoded examples, with every bad, cut or dropped record counted and named.

Nothing is lost silently: a record that cannot be used (invalid JSON, a missing field, no
assistant turn, an empty response, no response left within `max_seq_len`, or too long under
`overlong: drop`) is counted under its reason and named by file and line; a record cut to fit
is counted with the tokens it lost and named too.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sky_distill.generate.topk_store import TopK, TopKRows, build_row_cache
from sky_distill.records import RecordError, SFTExample, iter_json_objects, iter_jsonl
from sky_distill.train.data import EncodedExample, encode_conversation
from sky_distill.train.teacher_signal import TeacherAlignmentError, align_rows

MAX_REPORTED = 20  # locations listed per kind; the counts are always complete


@dataclass
class DataReport:
    """What became of the input records: kept, rejected (by reason, with where), truncated."""

    records: int = 0
    kept: int = 0
    rejected: int = 0
    rejected_by_reason: Counter = field(default_factory=Counter)
    truncated_examples: int = 0
    truncated_tokens: int = 0
    tokens: int = 0
    target_tokens: int = 0
    longest: int = 0
    errors: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)

    def reject(self, error: RecordError, reason: str) -> None:
        self.rejected += 1
        self.rejected_by_reason[reason] += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(str(error))

    def cut(self, path: str, line: int, tokens: int, length: int) -> None:
        self.truncated_examples += 1
        self.truncated_tokens += tokens
        if len(self.truncated) < MAX_REPORTED:
            self.truncated.append(f"{path}:{line}: {length} tokens, {tokens} cut")

    def as_dict(self) -> dict[str, Any]:
        return {
            "train/data/records": self.records,
            "train/data/kept": self.kept,
            "train/data/rejected": self.rejected,
            "train/data/rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            "train/data/truncated_examples": self.truncated_examples,
            "train/data/truncated_tokens": self.truncated_tokens,
            "train/data/tokens": self.tokens,
            "train/data/target_tokens": self.target_tokens,
            "train/data/longest": self.longest,
            "train/data/errors": self.errors,
            "train/data/truncated": self.truncated,
        }

    def summary_line(self) -> str:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(self.rejected_by_reason.items()))
        return (
            f"{self.records} records: {self.kept} kept, {self.rejected} rejected"
            f"{f' ({reasons})' if reasons else ''}, {self.truncated_examples} truncated "
            f"({self.truncated_tokens} tokens cut); {self.tokens} tokens, {self.target_tokens} learned"
        )


def _check_example(example: SFTExample, path: str, line: int) -> tuple[RecordError, str] | None:
    if not example.messages or example.messages[-1].role != "assistant":
        return RecordError(path, line, "messages", "the last message must be the assistant response"), "no_response"
    last = len(example.messages) - 1
    if not example.messages[-1].content.strip():
        return RecordError(path, line, f"messages.{last}.content", "empty response"), "empty_response"
    return None


def load_sft_examples(
    files: Sequence[str | Path],
    tokenizer: Any,
    max_seq_len: int,
    overlong: str = "truncate",
    end_of_turn: set[int] | None = None,
    teacher_topk: Mapping[tuple[str, int], TopK] | TopKRows | None = None,
) -> tuple[list[EncodedExample], DataReport]:
    """Encode every usable record of the SFT files; over-long ones are cut (or dropped) at `max_seq_len`.

    With `teacher_topk` (offline distillation, keyed by problem id and sample index) each example
    carries its trace's stored rows; a record without rows, or whose tokens are not the ones the
    teacher sampled, raises `TeacherAlignmentError` naming file, line and field.
    """
    if overlong not in ("truncate", "drop"):
        raise ValueError(f"overlong must be 'truncate' or 'drop', got {overlong!r}")
    report = DataReport()
    examples: list[EncodedExample] = []
    for path in files:
        for line, item in iter_jsonl(path, SFTExample):
            report.records += 1
            if isinstance(item, RecordError):
                report.reject(item, "invalid_record")
                continue
            problem = _check_example(item, str(path), line)
            if problem:
                report.reject(*problem)
                continue
            messages = [message.model_dump() for message in item.messages]
            encoded = encode_conversation(tokenizer, messages, max_seq_len, end_of_turn)
            full_length = len(encoded) + encoded.truncated_tokens
            if encoded.truncated_tokens and overlong == "drop":
                message = f"{full_length} tokens exceed max_seq_len {max_seq_len} (overlong: drop)"
                report.reject(RecordError(str(path), line, "messages", message), "overlong")
                continue
            if encoded.num_target_tokens == 0:
                message = f"no response tokens left within max_seq_len {max_seq_len} ({full_length} tokens)"
                report.reject(RecordError(str(path), line, "messages", message), "no_response_within_max_seq_len")
                continue
            if teacher_topk is not None:
                encoded = _with_teacher_rows(
                    encoded, item, teacher_topk, end_of_turn or {tokenizer.eos_token_id}, path, line
                )
            if encoded.truncated_tokens:
                report.cut(str(path), line, encoded.truncated_tokens, full_length)
            report.kept += 1
            report.tokens += len(encoded)
            report.target_tokens += encoded.num_target_tokens
            report.longest = max(report.longest, full_length)
            examples.append(encoded)
    return examples, report


def _with_teacher_rows(
    encoded: EncodedExample,
    item: SFTExample,
    topk: Mapping | TopKRows,
    end_of_turn: set[int],
    path: str | Path,
    line: int,
) -> EncodedExample:
    stored = topk.get((item.problem_id, item.sample_index))
    if stored is None:
        raise TeacherAlignmentError(
            f"{path}:{line}: problem_id/sample_index: no stored teacher top-k log-probs for "
            f"({item.problem_id!r}, {item.sample_index}); generate with generate.sampling.logprobs=k"
        )
    rows = align_rows(encoded.response_ids, bool(encoded.truncated_tokens), stored, end_of_turn)
    if isinstance(rows, str):
        raise TeacherAlignmentError(f"{path}:{line}: messages.{len(item.messages) - 1}.content: {rows}")
    return dataclasses.replace(encoded, teacher=rows)


def sft_keys(files: Sequence[str | Path]) -> Iterator[tuple[str, int]]:
    """The (problem id, sample index) of every record of the SFT files, streamed (bad lines skipped:
    `load_sft_examples` reports them)."""
    for path in files:
        for _, data in iter_json_objects(path):
            if not isinstance(data, RecordError) and isinstance(data.get("sample_index", 0), int):
                yield str(data.get("problem_id", "")), data.get("sample_index", 0)


def open_teacher_rows(
    directories: Sequence[str | Path], files: Sequence[str | Path], cache_dir: str | Path
) -> TopKRows:
    """The stored top-k rows of the SFT files' samples only, cached uncompressed in `cache_dir` and
    memory-mapped: rejected traces are never read, and a rank reads the rows it trains on."""
    return TopKRows(build_row_cache(directories, sft_keys(files), cache_dir))
