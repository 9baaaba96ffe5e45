"""Merging shard files into one trace file, after checking that every shard is complete."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from sky_distill.errors import SkyDistillError
from sky_distill.generate.shards import shard_name
from sky_distill.records import Problem, RecordError, Trace, iter_jsonl, read_jsonl, write_jsonl
from sky_distill.runs import fingerprint_files, mark_complete, read_json


class IncompleteShardsError(SkyDistillError):
    """Some shards are missing or unfinished; the message names them."""


def shard_summary_path(shard_dir: Path, name: str) -> Path:
    return shard_dir / f"{name}.summary.json"


def check_shards(stage_dir: Path, shard_count: int) -> list[dict[str, Any]]:
    """The summaries of all shards; raise naming every shard that is missing or incomplete."""
    shard_dir = stage_dir / "shards"
    summaries, problems = [], []
    for index in range(shard_count):
        name = shard_name(index, shard_count)
        path = shard_summary_path(shard_dir, name)
        if not path.exists():
            problems.append(f"{name}: not run")
            continue
        summary = read_json(path)
        if not summary.get("complete"):
            problems.append(f"{name}: {summary['done_samples']} of {summary['expected_samples']} samples")
        summaries.append(summary)
    if problems:
        raise IncompleteShardsError(
            f"cannot merge {shard_count} shards: " + "; ".join(problems) + ". Re-run those shards (generation resumes)."
        )
    return summaries


def summarize_traces(traces: list[Trace]) -> dict[str, Any]:
    tokens = [trace.completion_tokens for trace in traces]
    return {
        "problems": len({trace.problem_id for trace in traces}),
        "samples": len(traces),
        "gen/completion_tokens": sum(tokens),
        "gen/mean_completion_tokens": round(statistics.fmean(tokens), 1) if tokens else 0,
        "gen/truncation_rate": round(sum(trace.truncated for trace in traces) / len(traces), 4) if traces else 0,
        "models": sorted({trace.model for trace in traces}),
        "engines": sorted({trace.engine_version for trace in traces}),
    }


def merge_shards(stage_dir: Path, shard_count: int, provenance: dict[str, Any]) -> dict[str, Any]:
    """Write `traces.jsonl` (one line per sample, sorted) and `problems.jsonl`; mark complete."""
    summaries = check_shards(stage_dir, shard_count)
    traces: dict[tuple[str, int], Trace] = {}
    duplicates, unreadable = 0, []
    for index in range(shard_count):
        for _, item in iter_jsonl(stage_dir / "shards" / f"{shard_name(index, shard_count)}.jsonl", Trace):
            if isinstance(item, RecordError):
                unreadable.append(str(item))
            elif item.key in traces:
                duplicates += 1
            else:
                traces[item.key] = item
    expected = sum(summary["expected_samples"] for summary in summaries)
    if len(traces) < expected:
        raise IncompleteShardsError(f"shards hold {len(traces)} distinct samples, {expected} expected")
    ordered = [traces[key] for key in sorted(traces)]
    write_jsonl(stage_dir / "traces.jsonl", ordered)
    problems: list[Problem] = []
    for index in range(shard_count):
        shard_problems, _ = read_jsonl(stage_dir / "problems" / f"{shard_name(index, shard_count)}.jsonl", Problem)
        problems.extend(shard_problems)
    write_jsonl(stage_dir / "problems.jsonl", sorted(problems, key=lambda problem: problem.id))
    summary = {
        **summarize_traces(ordered),
        "shards": shard_count,
        "duplicate_lines_ignored": duplicates,
        "unreadable_lines": unreadable,
        "prompt_errors": [error for summary in summaries for error in summary.get("prompt_errors", [])],
        "traces_fingerprint": fingerprint_files([stage_dir / "traces.jsonl"]),
        "provenance": provenance,
    }
    mark_complete(stage_dir, summary)
    return summary
