"""Externally produced responses (another harness, an API batch, a paper's released outputs).

A JSONL file, one response per line:

    {"id": "2024-I-1", "response": "...", "sample_index": 0, "benchmark": "aime24"}

`id` may be spelled `problem_id`; `sample_index` numbers several samples of one problem (a
repeated id without it is an error, not a silent extra sample); `benchmark` is needed only when
more than one benchmark is scored. Optional: `completion_tokens`, `finish_reason`, `truncated`.
Other fields are ignored. Every bad line (missing field, unknown benchmark, an id the benchmark
lacks, a repeated id or sample) is reported with its file, line and field, all at once.
`coverage_gaps` says which problems have no (or fewer) samples: partial results are an error
unless `eval.responses.allow_missing` is set.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from sky_distill.errors import MissingInputError
from sky_distill.evaluate.scoring import Response
from sky_distill.records import RecordError, RecordFileError, iter_json_objects


def parse_response_row(
    row: dict[str, Any], where: tuple[str, int], benchmarks: dict[str, set[str]]
) -> tuple[str, str, int | None, Response] | RecordError:
    """(benchmark, id, sample_index or None, Response) for one row, or what is wrong with it."""
    path, line = where
    problem_id = row.get("id", row.get("problem_id"))
    if problem_id is None or str(problem_id).strip() == "":
        return RecordError(path, line, "id", "missing field (the problem id; `problem_id` also accepted)")
    problem_id = str(problem_id)
    response = row.get("response")
    if not isinstance(response, str):
        return RecordError(path, line, "response", "missing field" if response is None else "must be a string")
    benchmark = row.get("benchmark")
    if benchmark is None:
        if len(benchmarks) != 1:
            return RecordError(path, line, "benchmark", f"missing field (needed to choose one of {sorted(benchmarks)})")
        benchmark = next(iter(benchmarks))
    if benchmark not in benchmarks:
        return RecordError(path, line, "benchmark", f"{benchmark!r} is not among eval.benchmarks {sorted(benchmarks)}")
    if problem_id not in benchmarks[benchmark]:
        example = sorted(benchmarks[benchmark])[:2]
        return RecordError(
            path, line, "id", f"{problem_id!r} is not a problem of {benchmark} (its ids look like {example})"
        )
    sample_index = row.get("sample_index")
    if sample_index is not None and (
        isinstance(sample_index, bool) or not isinstance(sample_index, int) or sample_index < 0
    ):
        return RecordError(path, line, "sample_index", "must be a non-negative integer")
    tokens = row.get("completion_tokens")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0):
        return RecordError(path, line, "completion_tokens", "must be a non-negative integer")
    finish_reason = str(row.get("finish_reason") or "unknown")
    truncated = bool(row.get("truncated", finish_reason == "length"))
    return benchmark, problem_id, sample_index, Response(problem_id, 0, response, tokens, finish_reason, truncated)


def read_responses(
    path: str | Path,
    benchmarks: dict[str, set[str]],
    count_tokens: Callable[[str], int] | None = None,
) -> dict[str, list[Response]]:
    """Responses per benchmark; raise `RecordFileError` listing every bad line."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"responses file {path} does not exist")
    out: dict[str, list[Response]] = defaultdict(list)
    errors: list[RecordError] = []
    seen: dict[tuple[str, str, int], int] = {}
    first_line: dict[tuple[str, str], int] = {}
    next_index: dict[tuple[str, str], int] = defaultdict(int)
    for line_number, row in iter_json_objects(path):
        if isinstance(row, RecordError):
            errors.append(row)
            continue
        parsed = parse_response_row(row, (str(path), line_number), benchmarks)
        if isinstance(parsed, RecordError):
            errors.append(parsed)
            continue
        benchmark, problem_id, sample_index, response = parsed
        if sample_index is None and (benchmark, problem_id) in first_line:
            errors.append(
                RecordError(
                    str(path),
                    line_number,
                    "id",
                    f"{benchmark}/{problem_id} repeats line {first_line[(benchmark, problem_id)]}; "
                    "give each sample of a problem its sample_index (0, 1, ...)",
                )
            )
            continue
        first_line.setdefault((benchmark, problem_id), line_number)
        if sample_index is None:
            sample_index = next_index[(benchmark, problem_id)]
        next_index[(benchmark, problem_id)] = max(next_index[(benchmark, problem_id)], sample_index + 1)
        key = (benchmark, problem_id, sample_index)
        if key in seen:
            errors.append(
                RecordError(
                    str(path),
                    line_number,
                    "sample_index",
                    f"{benchmark}/{problem_id} sample {sample_index} repeats line {seen[key]}",
                )
            )
            continue
        seen[key] = line_number
        tokens = response.completion_tokens
        if tokens is None and count_tokens is not None:
            tokens = count_tokens(response.response)
        out[benchmark].append(replace(response, sample_index=sample_index, completion_tokens=tokens))
    if errors:
        raise RecordFileError(errors)
    return dict(out)


def coverage_gaps(responses: list[Response], problem_ids: list[str]) -> tuple[list[str], list[str], int]:
    """(problems without a response, problems with fewer samples than the most any has, that most)."""
    counts: dict[str, int] = defaultdict(int)
    for response in responses:
        counts[response.problem_id] += 1
    most = max(counts.values(), default=0)
    missing = [pid for pid in problem_ids if counts[pid] == 0]
    short = [pid for pid in problem_ids if 0 < counts[pid] < most]
    return missing, short, most


def describe_gaps(benchmark: str, total: int, missing: list[str], short: list[str], most: int) -> str:
    """One clause for an error or a summary: `aime24: 29 of 30 problems have no response (e.g. ...)`."""
    parts = []
    if missing:
        parts.append(f"{len(missing)} of {total} problems have no response (e.g. {missing[:3]})")
    if short:
        parts.append(f"{len(short)} problems have fewer than {most} samples (e.g. {short[:3]})")
    return f"{benchmark}: " + "; ".join(parts)


def token_counter(tokenizer: str) -> Callable[[str], int]:
    """Counts response tokens with a Hugging Face tokenizer (a path or Hub id)."""
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(tokenizer)
    return lambda text: len(loaded.encode(text, add_special_tokens=False))
