"""The record types that flow between stages, and their JSON Lines I/O.

problem -> (generate) trace -> (verify) verdict -> SFT example -> (train) model -> (eval) eval sample

Every record is validated where it enters a stage. A malformed line never disappears: it is
reported as a `RecordError` naming the file, line and field, and counted by the caller.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sky_distill.errors import SkyDistillError

AnswerType = Literal["math", "code", "choice"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Message(Record):
    role: Literal["system", "user", "assistant"]
    content: str


class Problem(Record):
    """A task instance with a checkable answer. `tests` holds a code problem's test suite."""

    id: str = Field(min_length=1)
    problem: str = Field(min_length=1)
    answer: str = ""
    source: str = Field(min_length=1)
    answer_type: AnswerType = "math"
    choices: list[str] | None = None
    tests: Any = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class Trace(Record):
    """One sampled teacher response to one problem, with what produced it."""

    problem_id: str = Field(min_length=1)
    sample_index: int = Field(ge=0)
    source: str
    messages: list[Message]  # the prompt as sent (system and user turns)
    response: str
    model: str
    engine: str
    engine_version: str
    sampling: dict[str, Any]
    seed: int | None = None
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    finish_reason: str
    truncated: bool
    elapsed_s: float = 0.0
    reasoning: str | None = None  # a separate reasoning channel (API teachers that return one)
    logprobs: list[dict[str, float]] | None = None  # top-k per sampled token, if requested
    token_ids: list[int] | None = None  # the sampled token ids, recorded with `logprobs` (aligns them)
    thought_format: str | None = None  # how `response` marks its thinking: none, think, sky_t1, reasoning_field

    @property
    def key(self) -> tuple[str, int]:
        return (self.problem_id, self.sample_index)


VerdictStatus = Literal["correct", "incorrect", "unparsed", "timeout", "error"]


class Verdict(Record):
    """The verifier's judgement of one trace (or one eval response)."""

    problem_id: str
    sample_index: int = Field(ge=0)
    correct: bool
    status: VerdictStatus
    extracted: str | None = None
    verifier: str
    verifier_version: str
    detail: str | None = None
    elapsed_s: float = 0.0


class SFTExample(Record):
    """A chat-formatted training example; `metadata` names the trace it came from."""

    messages: list[Message]
    problem_id: str = ""
    sample_index: int = 0
    source: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


class EvalSample(Record):
    """One scored model response on one benchmark problem."""

    benchmark: str
    problem_id: str
    sample_index: int = Field(ge=0)
    model: str
    response: str
    extracted: str | None = None
    correct: bool
    status: VerdictStatus
    completion_tokens: int = Field(ge=0)
    finish_reason: str
    truncated: bool
    detail: str | None = None  # the verifier's note (a failing test, a timeout)
    thinking_tokens: int | None = None  # tokens before the end of thinking, under budget forcing


R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class RecordError:
    """A line that could not be read as a record: where it is and what is wrong."""

    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.message}"


class RecordFileError(SkyDistillError, ValueError):
    """Raised by strict reads; carries every error found, not just the first."""

    def __init__(self, errors: list[RecordError]):
        self.errors = errors
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{errors[0]}{more}")


def parse_json_object(line: str, path: str, line_number: int) -> dict[str, Any] | RecordError:
    """One JSON line as an object, or why it is not one."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        return RecordError(path, line_number, "<json>", f"not valid JSON ({error.msg} at column {error.colno})")
    if not isinstance(data, dict):
        return RecordError(path, line_number, "<json>", f"expected a JSON object, got {type(data).__name__}")
    return data


def iter_json_objects(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | RecordError]]:
    """Yield (line number, object or `RecordError`) for each non-blank line of a JSONL file."""
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.strip():
                yield line_number, parse_json_object(line, str(path), line_number)


def parse_record(line: str, record_type: type[R], path: str, line_number: int) -> R | RecordError:
    """Parse one JSON line into `record_type`, or describe why it cannot be."""
    data = parse_json_object(line, path, line_number)
    if isinstance(data, RecordError):
        return data
    try:
        return record_type.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "<record>"
        return RecordError(path, line_number, field, first["msg"])


def iter_jsonl(path: str | Path, record_type: type[R]) -> Iterator[tuple[int, R | RecordError]]:
    """Yield (line number, record or `RecordError`) for each line of a JSONL file; blank lines are skipped."""
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.strip():
                yield line_number, parse_record(line, record_type, str(path), line_number)


def iter_jsonl_offsets(path: str | Path, record_type: type[R]) -> Iterator[tuple[int, int, R | RecordError]]:
    """Yield (byte offset, line number, record or `RecordError`) for each non-blank line, streamed."""
    offset = 0
    with open(path, "rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            start, offset = offset, offset + len(line)
            if line.strip():
                yield start, line_number, parse_record(line.decode("utf-8"), record_type, str(path), line_number)


def read_record_at(handle: Any, offset: int, record_type: type[R]) -> R:
    """The record on the line at `offset` of an open binary file (already read once, so valid)."""
    handle.seek(offset)
    return record_type.model_validate(json.loads(handle.readline()))


def read_jsonl(path: str | Path, record_type: type[R]) -> tuple[list[R], list[RecordError]]:
    """All valid records of a file and the errors of the others."""
    records: list[R] = []
    errors: list[RecordError] = []
    for _, item in iter_jsonl(path, record_type):
        (errors if isinstance(item, RecordError) else records).append(item)
    return records, errors


def read_jsonl_strict(path: str | Path, record_type: type[R]) -> list[R]:
    """All records of a file; raise `RecordFileError` listing every bad line if there is one."""
    records, errors = read_jsonl(path, record_type)
    if errors:
        raise RecordFileError(errors)
    return records


def to_json_line(record: BaseModel | dict[str, Any]) -> str:
    data = record.model_dump(mode="json", exclude_none=True) if isinstance(record, BaseModel) else record
    return json.dumps(data, ensure_ascii=False) + "\n"


class JsonlWriter:
    """Streams records to a temporary file renamed onto `path` when the block ends without error."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.temporary = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.count = 0
        self._handle: Any = None

    def __enter__(self) -> JsonlWriter:
        self._handle = open(self.temporary, "w", encoding="utf-8")  # noqa: SIM115
        return self

    def write(self, record: BaseModel | dict[str, Any]) -> None:
        self._handle.write(to_json_line(record))
        self.count += 1

    def __exit__(self, error_type, *_) -> None:
        handle, self._handle = self._handle, None
        try:
            if error_type is None:
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            handle.close()
        if error_type is None:
            os.replace(self.temporary, self.path)
        else:
            self.temporary.unlink(missing_ok=True)


def write_jsonl(path: str | Path, records: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write records to `path` atomically (a temp file renamed into place); return the count."""
    with JsonlWriter(path) as writer:
        for record in records:
            writer.write(record)
    return writer.count


def append_jsonl(path: str | Path, records: Iterable[BaseModel | dict[str, Any]], fsync: bool = True) -> int:
    """Append records as whole lines, flushed (and fsynced) before returning."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(to_json_line(record) for record in records)
    if not text:
        return 0
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        if fsync:
            os.fsync(handle.fileno())
    return text.count("\n")


def repair_torn_tail(path: str | Path) -> int:
    """Cut a last line that lacks its newline (a write torn by a crash); return bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        block = 1 << 16
        position = size
        while position > 0:
            start = max(0, position - block)
            handle.seek(start)
            chunk = handle.read(position - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                handle.truncate(keep)
                return size - keep
            position = start
        handle.truncate(0)
        return size
