"""Merging shard files into one trace file, after checking that every shard is complete.

The merge streams: a first pass indexes each shard file (key -> byte offset) and checks every
line, a second writes `traces.jsonl` in (problem id, sample index) order by reading lines at
their offsets, so memory holds the index, not the traces. Output files are written to a
temporary name and renamed; `COMPLETE.json` comes last.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sky_distill.errors import SkyDistillError
from sky_distill.generate.shards import shard_name
from sky_distill.generate.store import TraceStats
from sky_distill.generate.summary import trace_metrics
from sky_distill.records import Problem, RecordError, Trace, parse_record, read_jsonl_strict, write_jsonl
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


def expected_keys(problems: list[Problem], summary: dict[str, Any]) -> set[Key]:
    excluded = summary.get("excluded_problems", {})
    return {(p.id, index) for p in problems if p.id not in excluded for index in range(summary["n"])}


def index_shard(path: Path, expected: set[Key]) -> tuple[dict[Key, tuple[int, int]], dict[str, Any]]:
    """Byte offset and length of each expected sample's first line; counts of everything else."""
    index: dict[Key, tuple[int, int]] = {}
    stats: dict[Key, TraceStats] = {}
    unreadable: list[str] = []
    duplicates = extra = 0
    offset = 0
    with open(path, "rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            start, offset = offset, offset + len(line)
            if not line.strip():
                continue
            item = parse_record(line.decode("utf-8", errors="replace"), Trace, str(path), line_number)
            if isinstance(item, RecordError):
                unreadable.append(str(item))
            elif item.key not in expected:
                extra += 1
            elif item.key in index:
                duplicates += 1
            else:
                index[item.key] = (start, len(line))
                stats[item.key] = TraceStats.of(item)
    return index, {"stats": stats, "unreadable": unreadable, "duplicates": duplicates, "extra": extra}


def write_lines_atomic(path: Path, sources: list[tuple[Path, int, int]]) -> None:
    """Write the given (file, offset, length) lines, in order, to `path` via a temporary file."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    handles: dict[Path, Any] = {}
    try:
        with open(temporary, "wb") as out:
            for source, offset, length in sources:
                handle = handles.get(source) or handles.setdefault(source, open(source, "rb"))  # noqa: SIM115
                handle.seek(offset)
                out.write(handle.read(length))
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
    """Write `traces.jsonl` (every expected sample once, sorted) and `problems.jsonl`; mark complete."""
    summaries = check_shards(stage_dir, shard_count)
    names = [summary["shard"] for summary in summaries]
    locations: dict[Key, tuple[Path, int, int]] = {}
    stats: dict[Key, TraceStats] = {}
    problems: list[Problem] = []
    unreadable: list[str] = []
    duplicates = extra = 0
    short: list[str] = []
    for name, summary in zip(names, summaries):
        shard_problems = read_jsonl_strict(stage_dir / "problems" / f"{name}.jsonl", Problem)
        expected = expected_keys(shard_problems, summary)
        path = stage_dir / "shards" / f"{name}.jsonl"
        index, counts = (
            index_shard(path, expected)
            if path.exists()
            else ({}, {"stats": {}, "unreadable": [], "duplicates": 0, "extra": 0})
        )
        if len(index) < len(expected):
            short.append(f"{name}: {len(index)} of {len(expected)} samples in its file")
        locations.update({key: (path, *where) for key, where in index.items()})
        stats.update(counts["stats"])
        unreadable += counts["unreadable"]
        duplicates += counts["duplicates"]
        extra += counts["extra"]
        problems += [p for p in shard_problems if p.id not in summary.get("excluded_problems", {})]
    if short:
        raise IncompleteShardsError(
            "shard files hold fewer samples than their summaries say (" + "; ".join(short) + "); re-run those shards"
        )
    ordered = sorted(locations)
    write_lines_atomic(stage_dir / "traces.jsonl", [locations[key] for key in ordered])
    write_jsonl(stage_dir / "problems.jsonl", sorted(problems, key=lambda problem: problem.id))
    error_count = merge_errors(stage_dir / "shards", names, stage_dir / "errors.jsonl")
    summary = {
        "traces": str(stage_dir / "traces.jsonl"),
        "shards": shard_count,
        "gen/problems": len(problems),
        **trace_metrics(stats[key] for key in ordered),
        "gen/prompt_errors": sum(s["gen/prompt_errors"] for s in summaries),
        "gen/problem_errors": max((s["gen/problem_errors"] for s in summaries), default=0),
        "gen/unreadable_lines": len(unreadable),
        "gen/duplicate_lines": duplicates,
        "gen/extra_lines_ignored": extra,
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
