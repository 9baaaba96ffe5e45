"""Reading a benchmark's rows: a local JSONL copy in `paths.benchmarks_dir`, or the Hugging Face Hub.

`load_benchmark` returns the problems and a `RecordError` for every row that is not one
(missing field, duplicate id, bad date), so the caller counts and reports them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sky_distill.benchmarks.registry import BenchmarkSpec, unknown_benchmark
from sky_distill.benchmarks.rows import RowError, canonical_row, in_window, parse_day, row_date, row_to_problem
from sky_distill.config import BenchmarkOptions, TaskConfig
from sky_distill.errors import MissingInputError, SkyDistillError
from sky_distill.records import Problem, RecordError, iter_json_objects
from sky_distill.tasks.loader import load_task_problems

log = logging.getLogger(__name__)
DEFAULT_LOCAL_FIELDS = {"id": "id", "problem": "problem"}


class BenchmarkUnavailableError(SkyDistillError):
    """The benchmark's data cannot be read (Hub unreachable or gated, local file missing)."""


@dataclass(frozen=True)
class LoadedBenchmark:
    """A benchmark's problems with what they came from."""

    name: str
    problems: list[Problem]
    errors: list[RecordError]
    source: dict[str, Any]  # where the rows were read (file or Hub id, split, release, window)
    spec: BenchmarkSpec | None  # None for the task's own held-out split

    @property
    def answer_type(self) -> str:
        return self.spec.answer_type if self.spec else (self.problems[0].answer_type if self.problems else "math")


Located = tuple[str, int, dict[str, Any]]


def read_local_rows(path: Path) -> Iterator[Located | RecordError]:
    for line_number, row in iter_json_objects(path):
        yield row if isinstance(row, RecordError) else (str(path), line_number, row)


def release_files(spec: BenchmarkSpec) -> list[str] | None:
    if not spec.releases:
        return None
    release = spec.release or next(iter(spec.releases))
    return spec.releases[release]


def read_hub_rows(spec: BenchmarkSpec) -> Iterator[Located]:
    """Rows of the benchmark's Hub dataset; an unreadable dataset is one clear error."""
    hub = spec.hub
    assert hub is not None
    files = release_files(spec) or hub.data_files
    where = f"hf://datasets/{hub.dataset}" + (f"/{hub.subset}" if hub.subset else "") + f"[{hub.split}]"
    try:
        import datasets

        if files:
            revision = hub.revision or "main"
            urls = [f if "://" in f else f"hf://datasets/{hub.dataset}@{revision}/{f}" for f in files]
            dataset = datasets.load_dataset("json", data_files=urls, split="train")
        else:
            dataset = datasets.load_dataset(hub.dataset, hub.subset, split=hub.split, revision=hub.revision)
    except Exception as error:  # the Hub reports gating, network and naming problems as many types
        raise BenchmarkUnavailableError(hub_failure_message(spec, error)) from error
    for index, row in enumerate(dataset):
        yield where, index + 1, dict(row)


def hub_failure_message(spec: BenchmarkSpec, error: Exception) -> str:
    hub = spec.hub
    assert hub is not None
    reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
    parts = [
        f"benchmark {spec.name!r} ({spec.title}): could not read {hub.dataset} from the Hugging Face Hub ({reason})."
    ]
    if hub.gated:
        parts.append(
            f"{hub.dataset} is gated: accept its terms at https://huggingface.co/datasets/{hub.dataset} "
            "and log in (`hf auth login` or HF_TOKEN)."
        )
    if spec.local:
        parts.append(f"Or put a local copy {spec.local.file} in paths.benchmarks_dir (or $SKY_DISTILL_BENCHMARKS).")
    return " ".join(parts)


def choose_source(spec: BenchmarkSpec, benchmarks_dir: str | None, source: str) -> tuple[str, Path | None]:
    """'local' with its path, or 'hub'; `source` is auto, local or hub."""
    local_path = Path(benchmarks_dir) / spec.local.file if (spec.local and benchmarks_dir) else None
    if source in ("auto", "local") and local_path is not None and local_path.is_file():
        return "local", local_path
    if source == "local" or spec.hub is None:
        where = local_path or f"paths.benchmarks_dir/{spec.local.file if spec.local else '?'}"
        hint = "" if benchmarks_dir else " (paths.benchmarks_dir is not set)"
        raise MissingInputError(f"benchmark {spec.name!r}: no local copy at {where}{hint}")
    return "hub", None


@dataclass
class Rows:
    """A benchmark's raw rows (or the errors of unreadable lines), with the field mapping of their source."""

    rows: Iterator[Located | RecordError]
    fields: dict[str, str]  # record field -> column, or a "{column}" template
    answer_from: str
    source: dict[str, Any]  # where the rows are read (file or Hub id, split, release)


def open_rows(spec: BenchmarkSpec, benchmarks_dir: str | Path | None, source: str = "auto") -> Rows:
    """The rows of a benchmark: its local copy in `benchmarks_dir` when there is one (or `source` is
    local), else its Hub dataset; read lazily."""
    kind, path = choose_source(spec, str(benchmarks_dir) if benchmarks_dir else None, source)
    if kind == "local":
        assert spec.local is not None and path is not None
        return Rows(
            read_local_rows(path),
            {**DEFAULT_LOCAL_FIELDS, **spec.local.fields},
            spec.local.answer_from,
            {"kind": "local", "path": str(path)},
        )
    assert spec.hub is not None
    hub = spec.hub
    where = {"kind": "hub", "dataset": hub.dataset, "subset": hub.subset, "split": hub.split, "revision": hub.revision}
    return Rows(read_hub_rows(spec), dict(hub.fields), hub.answer_from, where)


def problem_statements(
    spec: BenchmarkSpec, benchmarks_dir: str | Path | None, source: str = "auto"
) -> tuple[list[str], list[RecordError], dict[str, Any]]:
    """The problem statement of every row (the `problem` field as the source maps it, before any prompt
    template), the rows without one, and where they were read. Used by decontamination."""
    rows = open_rows(spec, benchmarks_dir, source)
    mapping = {key: rows.fields[key] for key in ("problem",) if key in rows.fields}
    texts: list[str] = []
    errors: list[RecordError] = []
    for item in rows.rows:
        if isinstance(item, RecordError):
            errors.append(item)
            continue
        where, line, row = item
        try:
            text = canonical_row(row, mapping).get("problem")
        except RowError as error:
            errors.append(RecordError(where, line, error.field, str(error)))
            continue
        if text is None or not str(text).strip():
            errors.append(RecordError(where, line, mapping.get("problem", "problem"), "no problem text"))
            continue
        texts.append(str(text))
    return texts, errors, rows.source


def load_registry_benchmark(
    spec: BenchmarkSpec, benchmarks_dir: str | None, options: BenchmarkOptions
) -> LoadedBenchmark:
    """A registry benchmark's problems, with the run's options (release, window, limit, prompt) applied."""
    spec = spec.with_options(
        release=options.release,
        date_from=options.date_from,
        date_to=options.date_to,
        prompt_template=options.prompt_template,
    )
    opened = open_rows(spec, benchmarks_dir, options.source)
    fields, answer_from, rows, source = opened.fields, opened.answer_from, opened.rows, opened.source
    date_from = parse_day(spec.date_from, f"eval.options.{spec.name}.date_from") if spec.date_from else None
    date_to = parse_day(spec.date_to, f"eval.options.{spec.name}.date_to") if spec.date_to else None
    source.update({"release": spec.release if spec.releases else None, "date_from": spec.date_from})
    source["date_to"] = spec.date_to
    problems: list[Problem] = []
    errors: list[RecordError] = []
    seen: dict[str, str] = {}
    index = -1
    for item in rows:
        if isinstance(item, RecordError):
            errors.append(item)
            continue
        where, line, row = item
        index += 1
        row = {**row, "_index": index}  # templates may use {_index}, the row's position from 0
        if "id" not in fields and "id" not in row:
            row["id"] = f"{spec.name}-{index}"
        if spec.date_field and (date_from or date_to):
            if spec.date_field not in row:
                errors.append(RecordError(where, line, spec.date_field, "missing date field"))
                continue
            try:
                if not in_window(row_date(row[spec.date_field]), date_from, date_to):
                    continue
            except ValueError as error:
                errors.append(RecordError(where, line, spec.date_field, str(error)))
                continue
        problem = row_to_problem(row, spec, fields, answer_from, spec.prompt_template, (where, line))
        if isinstance(problem, Problem) and problem.id in seen:
            problem = RecordError(where, line, "id", f"duplicate id {problem.id!r} (first at {seen[problem.id]})")
        if isinstance(problem, RecordError):
            errors.append(problem)
            continue
        seen[problem.id] = f"{where}:{line}"
        problems.append(problem)
        if options.limit and len(problems) >= options.limit:
            break
    if not problems:
        detail = f"; first error: {errors[0]}" if errors else ""
        raise BenchmarkUnavailableError(f"benchmark {spec.name!r}: no usable problems in {source}{detail}")
    return LoadedBenchmark(spec.name, problems, errors, source, spec)


class TrainTestLeakError(SkyDistillError):
    """The task's own benchmark would score problems the student trained on."""


def held_out_task(task: TaskConfig) -> TaskConfig:
    """The task config that reads its held-out problems; refuse a task that has none."""
    if task.kind == "arithmetic":
        return task
    if task.kind == "jsonl" and task.test_path:
        return task.model_copy(update={"path": task.test_path, "limit": None})
    if task.kind == "hub" and task.test_split:
        return task.model_copy(update={"split": task.test_split, "limit": None})
    setting = {"jsonl": "task.test_path (a held-out JSONL)", "hub": "task.test_split (the held-out split)"}
    raise TrainTestLeakError(
        f"benchmark {task.name!r} is the task itself (task.kind={task.kind}), whose problems are the training "
        f"problems; set {setting.get(task.kind, 'a held-out set')} or evaluate a benchmark from eval/benchmarks/"
    )


def load_task_benchmark(task: TaskConfig, options: BenchmarkOptions) -> LoadedBenchmark:
    """The task's held-out split, the benchmark named after the task (the demo's `arithmetic`).

    Problems that are also training problems (same id or same text) are an error, not a score.
    """
    held_out = held_out_task(task)
    problems, errors = load_task_problems(held_out, "test")
    train, _ = load_task_problems(task, "train")
    train_ids, train_texts = {p.id for p in train}, {p.problem.strip() for p in train}
    leaked = [p.id for p in problems if p.id in train_ids or p.problem.strip() in train_texts]
    if leaked:
        raise TrainTestLeakError(
            f"benchmark {task.name!r}: {len(leaked)} of {len(problems)} held-out problems are also training "
            f"problems (same id or text, e.g. {leaked[:3]}); remove them from the held-out set"
        )
    if options.limit:
        problems = problems[: options.limit]
    source = {
        "kind": "task",
        "task": task.name,
        "split": "test",
        "path": held_out.path if task.kind == "jsonl" else None,
    }
    if task.kind == "hub":
        source.update({"dataset": task.dataset, "split": held_out.split})
    return LoadedBenchmark(task.name, problems, errors, source, None)


def resolve_benchmark(
    name: str,
    registry: dict[str, BenchmarkSpec],
    task: TaskConfig,
    benchmarks_dir: str | None,
    options: BenchmarkOptions | None = None,
) -> LoadedBenchmark:
    """Load a benchmark by name: the task's own split, or a registry definition."""
    options = options or BenchmarkOptions()
    if name == task.name:
        return load_task_benchmark(task, options)
    if name not in registry:
        raise unknown_benchmark(name, [*registry, task.name])
    return load_registry_benchmark(registry[name], benchmarks_dir, options)
