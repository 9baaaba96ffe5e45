"""Problem sources: the synthetic arithmetic task, local JSONL files, and Hub datasets.

Every source yields `Problem` records plus a `RecordError` for each row that is not one
(missing or empty id, empty problem text, a multiple-choice problem without choices, a
duplicate id), naming the file, line and source column, so callers can count and report them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sky_distill.config import TaskConfig
from sky_distill.records import Problem, RecordError
from sky_distill.tasks.arithmetic import ArithmeticSpec, make_problems

DEFAULT_FIELDS = {"id": "id", "problem": "problem", "answer": "answer", "choices": "choices"}


def problem_from_row(
    row: dict[str, Any], fields: dict[str, str], source: str, answer_type: str, where: tuple[str, int]
) -> Problem | RecordError:
    """Map a raw row onto a `Problem`; unmapped columns go to `metadata`."""
    path, line = where
    mapping = {**DEFAULT_FIELDS, **fields}
    data: dict[str, Any] = {"source": row.get("source") or source, "answer_type": answer_type}
    for target, column in mapping.items():
        if target not in Problem.model_fields:
            continue
        if column not in row:
            if target in ("id", "problem"):
                return RecordError(path, line, column, f"missing field (mapped to {target!r})")
            continue
        value = row[column]
        data[target] = value if target in ("tests", "choices") else ("" if value is None else str(value))
    used = set(mapping.values())
    data["metadata"] = {key: value for key, value in row.items() if key not in used and _jsonable(value)}
    for target in ("id", "problem"):
        if not str(data.get(target, "")).strip():
            return RecordError(path, line, mapping[target], f"empty {target} (mapped to {target!r})")
    if answer_type == "choice" and not (isinstance(data.get("choices"), list) and data["choices"]):
        column = mapping.get("choices", "choices")
        return RecordError(path, line, column, "a multiple-choice problem needs a non-empty list of choices")
    try:
        return Problem.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = mapping.get(str(first["loc"][0]), str(first["loc"][0])) if first["loc"] else "<record>"
        return RecordError(path, line, field, first["msg"])


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


Located = tuple[str, int, "Problem | RecordError"]


def drop_duplicate_ids(items: Iterable[Located]) -> Iterator[Located]:
    """Keep the first problem of each id; a later one becomes an error naming where the first was."""
    seen: dict[str, str] = {}
    for path, line, item in items:
        if isinstance(item, Problem):
            if item.id in seen:
                yield path, line, RecordError(path, line, "id", f"duplicate id {item.id!r} (first at {seen[item.id]})")
                continue
            seen[item.id] = f"{path}:{line}"
        yield path, line, item


def with_derived_answer(row: dict[str, Any], task: TaskConfig) -> dict[str, Any]:
    """Fill `answer` from the reference solution's last boxed answer when the task asks for it."""
    if not task.answer_from_solution:
        return row
    from sky_distill.verify.math import last_boxed

    solution = row.get(task.fields.get("solution", "solution"))
    return {**row, "answer": last_boxed(str(solution or "")) or ""}


def read_problem_file(path: str | Path, fields: dict[str, str], source: str, answer_type: str) -> Iterator[Located]:
    """Rows of a JSON Lines, JSON array or parquet file, or of every such file in a folder or glob."""
    from sky_distill.data_sources.sources import DataSource, file_rows, source_files

    for file in source_files(DataSource(path=str(path))):
        for where, line_number, row in file_rows(file):
            if isinstance(row, RecordError):
                yield where, line_number, row
            else:
                yield where, line_number, problem_from_row(row, fields, source, answer_type, (where, line_number))


def read_hub_dataset(task: TaskConfig) -> Iterator[Located]:
    """Rows of a Hugging Face Hub dataset (needs network, or a populated HF cache)."""
    import datasets

    dataset = datasets.load_dataset(task.dataset, task.subset, split=task.split)
    where = f"hf://{task.dataset}/{task.subset or ''}/{task.split}"
    for index, row in enumerate(dataset):
        row = with_derived_answer(dict(row), task)
        row.setdefault("id", f"{task.name}-{index}")
        yield where, index + 1, problem_from_row(row, task.fields, task.name, task.answer_type, (where, index + 1))


def load_task_problems(task: TaskConfig, split: str) -> tuple[list[Problem], list[RecordError]]:
    """The problems of a task split and the errors of rows that were not usable."""
    problems, errors, _ = load_task_problems_located(task, split)
    return problems, errors


def load_task_problems_located(
    task: TaskConfig, split: str
) -> tuple[list[Problem], list[RecordError], dict[str, tuple[str, int]]]:
    """`load_task_problems`, plus the file and line each problem was read from (for later errors)."""
    if task.kind == "arithmetic":
        spec = ArithmeticSpec(task.min_digits, task.max_digits, task.seed)
        count = task.train_size if split == "train" else task.test_size
        items: Iterable[Located] = (
            (task.name, index + 1, problem) for index, problem in enumerate(make_problems(spec, split, count))
        )
    elif task.kind == "jsonl":
        items = read_problem_file(task.path, task.fields, task.name, task.answer_type)
    elif task.kind == "mixture":
        from sky_distill.tasks.mixture import mixture_problems

        items = mixture_problems(task)
    else:
        items = read_hub_dataset(task)
    problems: list[Problem] = []
    errors: list[RecordError] = []
    locations: dict[str, tuple[str, int]] = {}
    for path, line, item in drop_duplicate_ids(items):
        if isinstance(item, RecordError):
            errors.append(item)
        else:
            problems.append(item)
            locations[item.id] = (path, line)
        if task.limit and len(problems) >= task.limit:
            break
    return problems, errors, locations
