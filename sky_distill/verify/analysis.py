"""A verify run as tables, for notebooks: one row per trace with its verdict and whether it was kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sky_distill.records import Problem, SFTExample, Trace, Verdict, read_jsonl
from sky_distill.runs import read_json


def traces_frame(run_dir: str | Path):
    """Every trace of `<run_dir>/generate` with its verdict, its problem's type and difficulty, and `kept`."""
    import pandas as pd

    run_dir = Path(run_dir)
    traces, _ = read_jsonl(run_dir / "generate" / "traces.jsonl", Trace)
    problems, _ = read_jsonl(run_dir / "generate" / "problems.jsonl", Problem)
    verdicts, _ = read_jsonl(run_dir / "verify" / "verdicts.jsonl", Verdict)
    kept, _ = read_jsonl(run_dir / "verify" / "sft" / "verified.jsonl", SFTExample)
    by_problem = {problem.id: problem for problem in problems}
    by_key = {(verdict.problem_id, verdict.sample_index): verdict for verdict in verdicts}
    kept_keys = {(example.problem_id, example.sample_index) for example in kept}
    rows: list[dict[str, Any]] = []
    for trace in traces:
        problem = by_problem.get(trace.problem_id)
        verdict = by_key.get(trace.key)
        meta = problem.metadata if problem else {}
        rows.append(
            {
                "problem_id": trace.problem_id,
                "sample_index": trace.sample_index,
                "source": trace.source,
                "answer_type": problem.answer_type if problem else None,
                "difficulty": str(meta.get("level") or meta.get("difficulty") or meta.get("digits") or "unknown"),
                "status": verdict.status if verdict else "missing",
                "correct": bool(verdict and verdict.correct),
                "completion_tokens": trace.completion_tokens,
                "response_chars": len(trace.response),
                "truncated": trace.truncated,
                "finish_reason": trace.finish_reason,
                "kept": trace.key in kept_keys,
                "check_s": verdict.elapsed_s if verdict else None,
            }
        )
    return pd.DataFrame(rows)


def acceptance(frame, by: str):
    """Samples, acceptance, truncation and kept counts per value of `by`."""
    grouped = frame.groupby(by)
    table = grouped.agg(
        samples=("correct", "size"),
        correct=("correct", "sum"),
        kept=("kept", "sum"),
        truncated=("truncated", "mean"),
        median_tokens=("completion_tokens", "median"),
    )
    table["acceptance"] = table.correct / table.samples
    return table.sort_values("samples", ascending=False)


def report(run_dir: str | Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / "verify" / "report.json")
