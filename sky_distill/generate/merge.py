"""Merging shard files into one trace file, after checking that every shard is complete.

The merge streams: a first pass indexes each shard file (per problem and sample index: byte
offset and length, in numpy arrays) and checks every line, a second writes `traces.jsonl` in
(problem id, sample index) order by reading lines at their offsets, summing the statistics as
they pass, so memory holds 12 bytes a sample and an id per problem, not the traces. Output files are written to a
temporary name and renamed; `COMPLETE.json` comes last.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sky_distill.errors import SkyDistillError
from sky_distill.generate.shards import shard_name
from sky_distill.generate.store import TraceStats
from sky_distill.records import (
    Problem,
    RecordError,
    RecordFileError,
    Trace,
    iter_jsonl_offsets,
    read_record_at,
    write_jsonl,
)
from sky_distill.runs import fingerprint_files, fingerprint_object, mark_complete, read_json

Key = tuple[str, int]


class IncompleteShardsError(SkyDistillError):
    """Some shards are missing or unfinished; the message names them."""


class MismatchedShardsError(SkyDistillError):
    """Shards were generated with different settings; merging them would mix two experiments."""


def shard_summary_path(shard_dir: Path, name: str) -> Path:
    return shard_dir / f"{name}.summary.json"


def shards_fingerprint(summaries: list[dict[str, Any]]) -> str:
    """Changes whenever a shard's content may have: its settings, problems, n or sample count."""
    return fingerprint_object(
        [
            [s["shard"], s["settings_fingerprint"], s["problem_fingerprint"], s["n"], s["done_samples"]]
            for s in summaries
        ]
    )


def check_shards(stage_dir: Path, shard_count: int) -> list[dict[str, Any]]:
    """The summaries of all shards; raise naming every shard that is missing, incomplete or different."""
    shard_dir = stage_dir / "shards"
    summaries, problems = [], []
    for index in range(shard_count):
        name = shard_name(index, shard_count)
        path = shard_summary_path(shard_dir, name)
        if not path.exists():
            started = (shard_dir / f"{name}.jsonl").exists()
            problems.append(f"{name}: {'interrupted before its summary' if started else 'not run'}")
            continue
        summary = read_json(path)
        if not summary.get("complete"):
            problems.append(f"{name}: {summary['done_samples']} of {summary['expected_samples']} samples")
        summaries.append(summary)
    if problems:
        raise IncompleteShardsError(
            f"cannot merge {shard_count} shards: " + "; ".join(problems) + ". Re-run those shards (generation resumes)."
        )
    by_settings: dict[str, list[str]] = {}
    for summary in summaries:
        by_settings.setdefault(summary["settings_fingerprint"], []).append(summary["shard"])
    if len(by_settings) > 1:
        groups = "; ".join(f"settings {fp}: {', '.join(names)}" for fp, names in by_settings.items())
        raise MismatchedShardsError(f"shards were generated with different settings ({groups})")
    return summaries


@dataclass
class ShardIndex:
    """Where each expected sample's first line is in a shard file: byte offset and length per
    (problem, sample index), -1 where none; 12 bytes a sample, and a row number per problem."""

    path: Path
    rows: dict[str, int]  # problem id -> row
    offsets: np.ndarray  # [problems, n] int64
    lengths: np.ndarray  # [problems, n] int32
    unreadable: list[str] = field(default_factory=list)
    duplicates: int = 0
    extra: int = 0

    @property
    def found(self) -> int:
        return int((self.offsets >= 0).sum())


def index_shard(path: Path, problem_ids: list[str], n: int) -> ShardIndex:
    """Byte offset and length of each expected sample's first line; counts of everything else."""
    rows = {problem_id: row for row, problem_id in enumerate(problem_ids)}
    index = ShardIndex(path, rows, np.full((len(rows), n), -1, np.int64), np.zeros((len(rows), n), np.int32))
    if not path.exists():
        return index
    for offset, _, item in iter_jsonl_offsets(path, Trace):
        if isinstance(item, RecordError):
            index.unreadable.append(str(item))
            continue
        row = rows.get(item.problem_id)
        if row is None or item.sample_index >= n:
            index.extra += 1
        elif index.offsets[row, item.sample_index] >= 0:
            index.duplicates += 1
        else:
            index.offsets[row, item.sample_index] = offset
    with open(path, "rb") as handle:  # lengths: to the end of each indexed line
        for row, sample in zip(*np.nonzero(index.offsets >= 0)):
            handle.seek(int(index.offsets[row, sample]))
            index.lengths[row, sample] = len(handle.readline())
    return index


class TraceTotals:
    """The summary's per-sample totals and rates (as `summary.trace_metrics`), summed line by line."""

    def __init__(self) -> None:
        self.count = self.prompt = self.completion = self.longest = self.truncated = self.unclosed = 0

    def add_line(self, line: bytes) -> None:
        stats = TraceStats.of(Trace.model_validate(json.loads(line)))
        self.count += 1
        self.prompt += stats.prompt_tokens
        self.completion += stats.completion_tokens
        self.longest = max(self.longest, stats.completion_tokens)
        self.truncated += int(stats.truncated)
        self.unclosed += int(not stats.thought_closed)

    def metrics(self) -> dict[str, Any]:
        count = self.count
        return {
            "gen/samples": count,
            "gen/prompt_tokens": self.prompt,
            "gen/completion_tokens": self.completion,
            "gen/mean_completion_tokens": round(self.completion / count, 1) if count else 0.0,
            "gen/max_completion_tokens": self.longest,
            "gen/truncation_rate": round(self.truncated / count, 4) if count else 0.0,
            "gen/unclosed_thought_rate": round(self.unclosed / count, 4) if count else 0.0,
        }


def write_lines_atomic(
    path: Path, sources: Iterable[tuple[Path, int, int]], each: Callable[[bytes], None] | None = None
) -> None:
    """Write the given (file, offset, length) lines, in order, to `path` via a temporary file
    (`each` sees every line written)."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    handles: dict[Path, Any] = {}
    try:
        with open(temporary, "wb") as out:
            for source, offset, length in sources:
                handle = handles.get(source) or handles.setdefault(source, open(source, "rb"))  # noqa: SIM115
                handle.seek(offset)
                line = handle.read(length)
                out.write(line)
                if each is not None:
                    each(line)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        for handle in handles.values():
            handle.close()
        temporary.unlink(missing_ok=True)


def merge_errors(shard_dir: Path, names: list[str], out: Path) -> int:
    """All shards' error rows in one file, each row once (problem-file errors repeat per shard)."""
    seen: dict[str, None] = {}
    for name in names:
        path = shard_dir / f"{name}.errors.jsonl"
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    seen.setdefault(line, None)
    out.write_text("".join(f"{line}\n" for line in seen), encoding="utf-8")
    return len(seen)


def merge_shards(stage_dir: Path, shard_count: int, provenance: dict[str, Any]) -> dict[str, Any]:
    """Write `traces.jsonl` (every expected sample once, sorted) and `problems.jsonl`; mark complete.

    Memory holds per problem an id and a row, and 12 bytes per sample; never the traces.
    """
    summaries = check_shards(stage_dir, shard_count)
    names = [summary["shard"] for summary in summaries]
    indexes: list[ShardIndex] = []
    problem_lines: dict[str, tuple[int, int]] = {}  # problem id -> (shard, byte offset in its problem file)
    short: list[str] = []
    for number, (name, summary) in enumerate(zip(names, summaries)):
        excluded = summary.get("excluded_problems", {})
        problem_file = stage_dir / "problems" / f"{name}.jsonl"
        kept_ids: list[str] = []
        errors: list[RecordError] = []
        for offset, _, problem in iter_jsonl_offsets(problem_file, Problem):
            if isinstance(problem, RecordError):
                errors.append(problem)
            elif problem.id not in excluded:
                kept_ids.append(problem.id)
                problem_lines[problem.id] = (number, offset)
        if errors:
            raise RecordFileError(errors)
        unique_ids = list(dict.fromkeys(kept_ids))
        index = index_shard(stage_dir / "shards" / f"{name}.jsonl", unique_ids, summary["n"])
        if index.found < len(unique_ids) * summary["n"]:
            short.append(f"{name}: {index.found} of {len(unique_ids) * summary['n']} samples in its file")
        indexes.append(index)
    if short:
        raise IncompleteShardsError(
            "shard files hold fewer samples than their summaries say (" + "; ".join(short) + "); re-run those shards"
        )
    totals = TraceTotals()

    def ordered_lines() -> Iterator[tuple[Path, int, int]]:
        for problem_id in sorted(problem_lines):
            index = indexes[problem_lines[problem_id][0]]
            row = index.rows[problem_id]
            for sample in range(index.offsets.shape[1]):
                if index.offsets[row, sample] >= 0:
                    yield index.path, int(index.offsets[row, sample]), int(index.lengths[row, sample])

    write_lines_atomic(stage_dir / "traces.jsonl", ordered_lines(), totals.add_line)
    handles = [open(stage_dir / "problems" / f"{name}.jsonl", "rb") for name in names]  # noqa: SIM115
    try:
        problem_count = write_jsonl(
            stage_dir / "problems.jsonl",
            (
                read_record_at(handles[problem_lines[key][0]], problem_lines[key][1], Problem)
                for key in sorted(problem_lines)
            ),
        )
    finally:
        for handle in handles:
            handle.close()
    unreadable = [line for index in indexes for line in index.unreadable]
    error_count = merge_errors(stage_dir / "shards", names, stage_dir / "errors.jsonl")
    summary = {
        "traces": str(stage_dir / "traces.jsonl"),
        "shards": shard_count,
        "gen/problems": problem_count,
        **totals.metrics(),
        "gen/prompt_errors": sum(s["gen/prompt_errors"] for s in summaries),
        "gen/problem_errors": max((s["gen/problem_errors"] for s in summaries), default=0),
        "gen/unreadable_lines": len(unreadable),
        "gen/duplicate_lines": sum(index.duplicates for index in indexes),
        "gen/extra_lines_ignored": sum(index.extra for index in indexes),
        "errors_file": str(stage_dir / "errors.jsonl"),
        "error_rows": error_count,
        "unreadable_examples": unreadable[:10],
        "models": sorted({s["engine"]["model"] for s in summaries if "engine" in s}),
        "engines": sorted({s["engine"]["version"] for s in summaries if "engine" in s}),
        "settings_fingerprint": summaries[0]["settings_fingerprint"],
        "shards_fingerprint": shards_fingerprint(summaries),
        "traces_fingerprint": fingerprint_files([stage_dir / "traces.jsonl"]),
        "provenance": provenance,
    }
    mark_complete(stage_dir, summary)
    return summary
