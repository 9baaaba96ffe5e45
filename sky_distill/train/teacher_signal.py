"""The teacher's side of distillation, checked before training: tokenizer compatibility, and the
alignment of stored top-k rows to the student's tokens of each response. Pure.

Logits are compared token id by token id, so teacher and student must share a vocabulary;
any difference is an error that names it, never a silent misalignment. Stored rows belong to
the teacher's sampled tokens; they are used only where the student's tokenization of the SFT
response is exactly those tokens (a `raw` SFT format, the same tokenizer), else an error names
the file, line and field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sky_distill.errors import SkyDistillError
from sky_distill.generate.topk_store import RowSpan, TopK, read_released

EXAMPLES = 5  # differing tokens shown in an error


class TokenizerMismatchError(SkyDistillError, ValueError):
    """Teacher and student tokenizers differ; the message says how."""


class TeacherAlignmentError(SkyDistillError, ValueError):
    """Stored teacher rows do not belong to a training response's tokens."""


def _differing_keys(first: dict[str, Any], second: dict[str, Any]) -> list[str]:
    return sorted(key for key in set(first) | set(second) if first.get(key) != second.get(key))


def vocabulary_differences(
    student_vocab: dict[str, int],
    teacher_vocab: dict[str, int],
    student_special: dict[str, Any],
    teacher_special: dict[str, Any],
) -> list[str]:
    """What differs between two vocabularies (token -> id) and special tokens; empty if they match."""
    problems = []
    if len(student_vocab) != len(teacher_vocab):
        problems.append(f"vocabulary size {len(student_vocab)} (student) vs {len(teacher_vocab)} (teacher)")
    differing = [
        f"{token!r}: {student_vocab.get(token)} vs {teacher_vocab.get(token)}"
        for token in _differing_keys(student_vocab, teacher_vocab)
    ]
    if differing:
        shown = "; ".join(differing[:EXAMPLES])
        problems.append(f"{len(differing)} tokens with other ids (student vs teacher), e.g. {shown}")
    special = [
        f"{name}: {student_special.get(name)!r} vs {teacher_special.get(name)!r}"
        for name in _differing_keys(student_special, teacher_special)
    ]
    if special:
        problems.append("special tokens differ (student vs teacher): " + "; ".join(special))
    return problems


def check_tokenizers(student: Any, teacher: Any, teacher_name: str) -> None:
    """Raise `TokenizerMismatchError` unless both tokenizers map every token to the same id."""
    problems = vocabulary_differences(
        student.get_vocab(), teacher.get_vocab(), student.special_tokens_map, teacher.special_tokens_map
    )
    if problems:
        raise TokenizerMismatchError(
            f"the teacher {teacher_name} and the student tokenize differently, so their logits cannot be "
            "compared token by token: " + "; ".join(problems)
        )


@dataclass(frozen=True)
class TeacherRows:
    """Top-k rows for each target token of one encoded example, in order ([n, k] each)."""

    ids: np.ndarray
    logprobs: np.ndarray


@dataclass(frozen=True, slots=True)
class StoredTeacherRows:
    """`TeacherRows` still on disk: rows [start, stop) of the memory-mapped cache, read when training
    collates this example (only the rows this rank trains on are ever read); ~100 bytes a handle."""

    stored_ids: np.ndarray  # the whole mapped arrays, not copies
    stored_logprobs: np.ndarray
    start: int
    stop: int
    padding: int = 0  # padding rows after the stored ones (a closing end-of-turn token)

    @property
    def ids(self) -> np.ndarray:
        rows = read_released(self.stored_ids, self.start, self.stop)
        return np.concatenate([rows, np.full((self.padding, rows.shape[1]), -1, dtype=rows.dtype)])

    @property
    def logprobs(self) -> np.ndarray:
        rows = read_released(self.stored_logprobs, self.start, self.stop)
        return np.concatenate([rows, np.full((self.padding, rows.shape[1]), -np.inf, dtype=rows.dtype)])


def align_rows(
    response_ids: list[int], truncated: bool, stored: TopK, end_of_turn: set[int]
) -> TeacherRows | StoredTeacherRows | str:
    """The stored rows for the student's response tokens, or why they do not belong to them.

    The student's tokens must be the teacher's sampled tokens; one more token is allowed when
    it ends the turn (the chat template closes a response the teacher ended on a stop string)
    and gets padding rows (no teacher signal). A truncated example uses the rows of its prefix.
    """
    sampled = stored.sampled.tolist()
    shared = min(len(response_ids), len(sampled))
    if response_ids[:shared] != sampled[:shared]:
        first = next(i for i in range(shared) if response_ids[i] != sampled[i])
        return (
            f"the student's token {first} of the response is {response_ids[first]}, the teacher sampled "
            f"{sampled[first]} (is the SFT format raw, and the tokenizer the teacher's?)"
        )
    extra = len(response_ids) - len(sampled)
    if extra > 1 or (extra == 1 and response_ids[-1] not in end_of_turn):
        return f"{len(response_ids)} response tokens but {len(sampled)} sampled by the teacher"
    if extra < 0 and not truncated:
        return f"{len(response_ids)} response tokens but {len(sampled)} sampled by the teacher"
    ids, logprobs = stored.ids[:shared], stored.logprobs[:shared]
    if isinstance(ids, RowSpan):
        return StoredTeacherRows(ids.array, logprobs.array, ids.start, ids.stop, padding=max(extra, 0))
    if extra == 1:
        ids = np.concatenate([ids, np.full((1, ids.shape[1]), -1, dtype=ids.dtype)])
        logprobs = np.concatenate([logprobs, np.full((1, logprobs.shape[1]), -np.inf, dtype=logprobs.dtype)])
    return TeacherRows(ids, logprobs)
