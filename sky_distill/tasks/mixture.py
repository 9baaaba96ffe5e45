"""A recipe's data mixture: several Hub datasets, each filtered and drawn, as one problem list.

Each source (`TaskSourceConfig`) reads its Hub split, or with `task.local_dir` the local copy
`<local_dir>/<source>.jsonl` holding rows in the Hub's columns (tests and offline use write
those). Rows pass `where` (column equals a value, or one of a list), then the first `head` are
kept, then at most `count` are drawn by (seed, source). Problem ids are `<source>-<row>` unless
the rows carry an id column; `Problem.source` is the source's name, so every later count (kept
traces, plan) can be broken down by source.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sky_distill.config import TaskConfig, TaskSourceConfig
from sky_distill.errors import SkyDistillError
from sky_distill.records import Problem, RecordError, iter_json_objects

Located = tuple[str, int, "Problem | RecordError"]


class MixtureSourceError(SkyDistillError):
    """A source cannot be read as configured (a missing local file, a filter on a missing column)."""


def source_location(task: TaskConfig, name: str, source: TaskSourceConfig) -> str:
    if task.local_dir:
        return str(Path(task.local_dir) / f"{name}.jsonl")
    return f"hf://datasets/{source.dataset}" + (f"/{source.subset}" if source.subset else "") + f"[{source.split}]"


def source_rows(task: TaskConfig, name: str, source: TaskSourceConfig) -> Iterator[tuple[int, dict | RecordError]]:
    """(line or row number, row) of a source, from its local copy or the Hub."""
    if task.local_dir:
        path = Path(task.local_dir) / f"{name}.jsonl"
        if not path.exists():
            raise MixtureSourceError(
                f"task.sources.{name}: no local copy {path} (task.local_dir is set; write it in the columns "
                f"of {source.dataset}, or unset task.local_dir to read the Hub)"
            )
        yield from iter_json_objects(path)
        return
    import datasets

    dataset = datasets.load_dataset(source.dataset, source.subset, split=source.split)
    for index, row in enumerate(dataset):
        yield index + 1, dict(row)


def passes(row: dict[str, Any], where: dict[str, str | list[str]], name: str, location: str, line: int) -> bool:
    for column, wanted in where.items():
        if column not in row:
            raise MixtureSourceError(
                f"{location}:{line}: task.sources.{name}.where names column {column!r}, "
                f"which the rows do not have (they have {sorted(row)})"
            )
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if str(row[column]) not in allowed:
            return False
    return True


def apps_tests(input_output: Any) -> dict[str, Any]:
    """APPS/TACO `input_output` ({"inputs", "outputs", "fn_name"?}) as the verifier's test contract."""
    spec = json.loads(input_output) if isinstance(input_output, str) else input_output
    if not isinstance(spec, dict) or not spec.get("inputs"):
        raise ValueError("input_output: expected an object with non-empty 'inputs' and 'outputs'")
    inputs, outputs = spec["inputs"], spec.get("outputs") or []
    if len(inputs) != len(outputs):
        raise ValueError(f"input_output: {len(inputs)} inputs but {len(outputs)} outputs")
    if spec.get("fn_name"):  # call-based: the function on each argument list; outputs may be wrapped in a list
        code = (
            "def check(candidate):\n"
            f"    for args, expected in zip({inputs!r}, {outputs!r}):\n"
            "        result = candidate(*args)\n"
            "        assert result == expected or [result] == expected, (args, result, expected)\n"
        )
        return {"type": "functional", "code": code, "entry_point": spec["fn_name"]}
    text = [value if isinstance(value, str) else "\n".join(map(str, value)) for value in (*inputs, *outputs)]
    cases = [{"input": text[i], "output": text[len(inputs) + i]} for i in range(len(inputs))]
    return {"type": "stdio", "cases": cases}


def source_problems(task: TaskConfig, name: str, source: TaskSourceConfig) -> Iterator[Located]:
    """One source's problems (and rejected rows), filtered, cut at `head` and drawn to `count`."""
    from sky_distill.tasks.loader import problem_from_row
    from sky_distill.verify.math import last_boxed

    location = source_location(task, name, source)
    kept: list[tuple[int, dict]] = []
    for line, row in source_rows(task, name, source):
        if isinstance(row, RecordError):
            yield location, line, row
            continue
        if not passes(row, source.where, name, location, line):
            continue
        kept.append((line, row))
        if source.head and len(kept) >= source.head:
            break
    if source.count and source.count < len(kept):
        drawn = sorted(random.Random(f"{task.seed}-{name}").sample(range(len(kept)), source.count))
        kept = [kept[index] for index in drawn]
    for line, row in kept:
        row = {**row}
        row.setdefault("id", f"{name}-{line}")
        if source.answer_from_solution:
            row["answer"] = last_boxed(str(row.get(source.fields.get("solution", "solution")) or "")) or ""
        if source.tests_from == "apps":
            try:
                row["tests"] = apps_tests(row.get("input_output"))
            except (ValueError, json.JSONDecodeError) as error:
                yield location, line, RecordError(location, line, "input_output", str(error))
                continue
        fields = {**source.fields, "tests": "tests"} if source.tests_from else source.fields
        row["source"] = name
        yield location, line, problem_from_row(row, fields, name, source.answer_type, (location, line))


def mixture_problems(task: TaskConfig) -> Iterator[Located]:
    for name, source in task.sources.items():
        if source is not None:
            yield from source_problems(task, name, source)
