"""`sky-distill verify`: judge every trace, curate the correct ones, write SFT data and a report.

Inputs: `<run_dir>/generate/{traces,problems}.jsonl`. Outputs in `<run_dir>/verify/`:
`verdicts.jsonl`, `sft/verified.jsonl` (kept by the policy), `sft/all.jsonl` (the same filters,
no correctness check: the no-verification ablation), `report.json` and `COMPLETE.json`.
Verdicts are appended to `verdicts.partial.jsonl` as they come, so a killed run resumes there.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sky_distill.errors import MissingInputError
from sky_distill.records import (
    Problem,
    Trace,
    Verdict,
    append_jsonl,
    read_jsonl,
    repair_torn_tail,
    write_jsonl,
)
from sky_distill.runs import (
    completion,
    fingerprint_files,
    fingerprint_object,
    mark_complete,
    read_json,
    write_json_atomic,
)
from sky_distill.verify.checks import VERIFIER_VERSION, check_response, prepare_worker
from sky_distill.verify.code import CodeSettings
from sky_distill.verify.pool import Failure, Timeout, map_with_timeout
from sky_distill.verify.select import TraceFilter, filter_traces, select_traces
from sky_distill.verify.sft import to_sft_example

log = logging.getLogger(__name__)

PARTIAL = "verdicts.partial.jsonl"
PARTIAL_SETTINGS = "verdicts.partial.settings.json"
ERROR_EXAMPLES = 20


# --- verification ---------------------------------------------------------------------------


def verdict_from_outcome(problem_id: str, sample_index: int, outcome: Any, timeout_s: float) -> Verdict:
    """A `Verdict` from what a worker returned; an error's detail names the problem."""
    common = {
        "problem_id": problem_id,
        "sample_index": sample_index,
        "verifier": "sky_distill.verify",
        "verifier_version": VERIFIER_VERSION,
    }
    if isinstance(outcome, Timeout):
        return Verdict(
            **common, correct=False, status="timeout", detail=f"check exceeded {timeout_s:g}s (worker killed)"
        )
    if isinstance(outcome, Failure):
        return Verdict(**common, correct=False, status="error", detail=f"problem {problem_id}: {outcome.message}")
    detail = outcome.get("detail")
    if outcome["status"] == "error":
        detail = f"problem {problem_id}: {detail}"
    return Verdict(
        **common,
        correct=bool(outcome["correct"]),
        status=outcome["status"],
        extracted=outcome.get("extracted"),
        detail=detail,
        elapsed_s=outcome.get("elapsed_s", 0.0),
    )


def code_budget(timeout_s: float) -> float:
    """A code problem's own cap, a little under the worker's hard timeout so it can say which test ran out."""
    return max(timeout_s - max(1.0, 0.1 * timeout_s), 0.5 * timeout_s)


def verify_responses(
    items: Sequence[tuple[str, int, str]],
    problems: dict[str, Problem],
    timeout_s: float,
    workers: int,
    code: CodeSettings | None = None,
    progress_path: str | Path | None = None,
) -> list[Verdict]:
    """Verdicts for (problem id, sample index, response) triples, in order, checked in parallel.

    Each check runs in a worker killed past `timeout_s`. With `progress_path`, verdicts are
    appended there as they come, and verdicts already there (same verifier) are reused.
    """
    from tqdm import tqdm

    done = _read_progress(progress_path)
    work, positions, verdicts = [], [], [None] * len(items)
    for position, (problem_id, sample_index, response) in enumerate(items):
        if (problem_id, sample_index) in done:
            verdicts[position] = done[(problem_id, sample_index)]
            continue
        problem = problems.get(problem_id)
        if problem is None:
            verdicts[position] = verdict_from_outcome(
                problem_id,
                sample_index,
                {"status": "error", "correct": False, "detail": "no problem with this id in problems.jsonl"},
                timeout_s,
            )
            continue
        work.append((problem.answer_type, response, problem.answer, problem.tests, code_budget(timeout_s)))
        positions.append(position)
    if done:
        log.info("verify: reusing %d verdicts from %s", len(items) - len(work), progress_path)
    outcomes = map_with_timeout(check_response, work, timeout_s, workers, initializer=prepare_worker, initargs=(code,))
    batch: list[Verdict] = []
    for position, outcome in tqdm(
        zip(positions, outcomes), total=len(work), desc="verify", unit="response", mininterval=1.0
    ):
        problem_id, sample_index, _ = items[position]
        verdicts[position] = verdict = verdict_from_outcome(problem_id, sample_index, outcome, timeout_s)
        batch.append(verdict)
        if progress_path is not None and len(batch) >= 256:
            append_jsonl(progress_path, batch, fsync=False)
            batch = []
    if progress_path is not None and batch:
        append_jsonl(progress_path, batch, fsync=False)
    return verdicts  # type: ignore[return-value]


def _read_progress(progress_path: str | Path | None) -> dict[tuple[str, int], Verdict]:
    if progress_path is None or not Path(progress_path).exists():
        return {}
    repair_torn_tail(progress_path)
    verdicts, errors = read_jsonl(progress_path, Verdict)
    if errors:
        log.warning("verify: %d unreadable lines in %s are checked again", len(errors), progress_path)
    return {(v.problem_id, v.sample_index): v for v in verdicts if v.verifier_version == VERIFIER_VERSION}


def _prepare_progress(stage_dir: Path, settings: dict[str, Any]) -> Path:
    """The partial verdicts file, emptied when it was written under other settings."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    partial, marker = stage_dir / PARTIAL, stage_dir / PARTIAL_SETTINGS
    fingerprint = fingerprint_object(settings)
    if partial.exists() and (not marker.exists() or read_json(marker).get("fingerprint") != fingerprint):
        log.info("verify: settings changed since the partial run; checking every trace again")
        partial.unlink()
    write_json_atomic(marker, {"fingerprint": fingerprint, "settings": settings})
    return partial


# --- the report ------------------------------------------------------------------------------


def _difficulty(problem: Problem | None) -> Any:
    if problem is None:
        return None
    meta = problem.metadata
    return meta.get("level") or meta.get("difficulty") or meta.get("digits")


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _lengths(traces: Sequence[Trace]) -> dict[str, Any]:
    tokens = [trace.completion_tokens for trace in traces]
    if not tokens:
        return {"count": 0}
    return {
        "count": len(tokens),
        "mean": round(statistics.fmean(tokens), 1),
        "median": statistics.median(tokens),
        "max": max(tokens),
    }


def curation_report(
    traces: Sequence[Trace],
    verdicts: dict[tuple[str, int], Verdict],
    kept: Sequence[Trace],
    problems: dict[str, Problem],
) -> dict[str, Any]:
    """Acceptance overall, per source, difficulty and answer type; statuses, truncation, lengths, errors."""
    statuses = Counter(verdicts[trace.key].status for trace in traces)
    by_group: dict[str, Counter] = defaultdict(Counter)
    solved: set[str] = set()
    for trace in traces:
        verdict = verdicts[trace.key]
        problem = problems.get(trace.problem_id)
        answer_type = problem.answer_type if problem else "unknown"
        for group in (f"source={trace.source}", f"difficulty={_difficulty(problem)}", f"answer_type={answer_type}"):
            counts = by_group[group]
            counts["samples"] += 1
            counts["correct"] += int(verdict.correct)
            counts["truncated"] += int(trace.truncated)
            counts[f"status_{verdict.status}"] += 1
        if verdict.correct:
            solved.add(trace.problem_id)
    errors = [verdicts[trace.key] for trace in traces if verdicts[trace.key].status == "error"]
    correct_traces = [trace for trace in traces if verdicts[trace.key].correct]
    report: dict[str, Any] = {
        "verify/samples": len(traces),
        "verify/statuses": dict(statuses),
        "verify/acceptance_rate": _rate(statuses["correct"], len(traces)),
        "verify/timeout_rate": _rate(statuses["timeout"], len(traces)),
        "verify/unparsed_rate": _rate(statuses["unparsed"], len(traces)),
        "verify/error_rate": _rate(statuses["error"], len(traces)),
        "verify/kept": len(kept),
        "verify/problems": len({trace.problem_id for trace in traces}),
        "verify/problems_solved": len(solved),
        "verify/truncated": sum(trace.truncated for trace in traces),
        "verify/truncation_rate": _rate(sum(trace.truncated for trace in traces), len(traces)),
        "verify/lengths": {"all": _lengths(traces), "correct": _lengths(correct_traces), "kept": _lengths(kept)},
        "verify/errors": len(errors),
        "verify/error_examples": [error.detail for error in errors[:ERROR_EXAMPLES]],
        "verify/by_group": {},
    }
    for group, counts in sorted(by_group.items()):
        samples = counts["samples"]
        summary = {
            "samples": samples,
            "correct": counts["correct"],
            "acceptance_rate": _rate(counts["correct"], samples),
        }
        summary["truncation_rate"] = _rate(counts["truncated"], samples)
        for status in ("timeout", "unparsed", "error"):
            summary[f"{status}_rate"] = _rate(counts[f"status_{status}"], samples)
        report["verify/by_group"][group] = summary
    for group, summary in report["verify/by_group"].items():
        if group.startswith("answer_type="):
            kind = group.split("=", 1)[1]
            for name in ("acceptance_rate", "timeout_rate", "error_rate", "unparsed_rate"):
                report[f"verify/{kind}/{name}"] = summary[name]
    return report


# --- curation ----------------------------------------------------------------------------------


def curation_filter(
    traces: Sequence[Trace], problems: dict[str, Problem], config: Any, benchmarks_dir: str | None
) -> tuple[TraceFilter, dict[str, Any]]:
    """What never becomes training data (contaminated or near-duplicate problems, repeated traces,
    lengths, truncation), and counts of each."""
    from sky_distill.verify.decontam import build_index, contaminated_problems
    from sky_distill.verify.dedup import exact_duplicate_traces, near_duplicate_problems

    texts = {problem_id: problem.problem for problem_id, problem in problems.items()}
    summary: dict[str, Any] = {}
    excluded: set[str] = set()
    decontaminate = config.decontaminate
    if decontaminate.benchmarks:
        index = build_index(decontaminate.benchmarks, benchmarks_dir, decontaminate.ngram, decontaminate.min_overlap)
        found = contaminated_problems(texts, index)
        excluded |= set(found)
        per_benchmark = Counter(name for names in found.values() for name in names)
        traces_removed = Counter(name for trace in traces for name in found.get(trace.problem_id, ()))
        summary["decontamination"] = {
            "ngram": decontaminate.ngram,
            "min_overlap": decontaminate.min_overlap,
            "benchmarks": {name: index.sizes[name] for name in decontaminate.benchmarks},
            "problems_removed": len(found),
            "traces_removed": sum(1 for trace in traces if trace.problem_id in found),
            "problems_removed_by_benchmark": {name: per_benchmark[name] for name in decontaminate.benchmarks},
            "traces_removed_by_benchmark": {name: traces_removed[name] for name in decontaminate.benchmarks},
            "examples": sorted(found)[:ERROR_EXAMPLES],
        }
    dedup = config.dedup
    duplicates: set[tuple[str, int]] = set()
    if dedup.near_problems:
        near = near_duplicate_problems(
            {key: text for key, text in texts.items() if key not in excluded},
            threshold=dedup.threshold,
            num_perm=dedup.num_perm,
            shingle_size=dedup.shingle_words,
        )
        excluded |= near
        summary["near_duplicate_problems_removed"] = len(near)
    if dedup.exact:
        duplicates = exact_duplicate_traces(traces)
        summary["exact_duplicate_traces"] = len(duplicates)
    trace_filter = TraceFilter(
        drop_truncated=config.drop_truncated,
        min_tokens=config.min_tokens,
        max_tokens=config.max_tokens,
        excluded_problems=frozenset(excluded),
        excluded_traces=frozenset(duplicates),
    )
    return trace_filter, summary


def code_settings(sandbox: Any) -> CodeSettings:
    return CodeSettings(**sandbox.model_dump())


def run(cfg: Any) -> dict[str, Any]:
    from sky_distill.config import stage_config, to_container
    from sky_distill.runs import provenance

    typed = stage_config(cfg, "verify")
    config, paths = typed["verify"], typed["paths"]
    generate_dir = Path(paths.run_dir) / "generate"
    stage_dir = Path(paths.run_dir) / "verify"
    if completion(generate_dir) is None:
        raise MissingInputError(
            f"no complete generation in {generate_dir}; run `sky-distill generate` (and merge shards) first"
        )
    started = time.monotonic()
    traces, trace_errors = read_jsonl(generate_dir / "traces.jsonl", Trace)
    problem_list, problem_errors = read_jsonl(generate_dir / "problems.jsonl", Problem)
    for error in [*trace_errors, *problem_errors]:
        log.warning("unreadable record: %s", error)
    problems = {problem.id: problem for problem in problem_list}

    code = code_settings(config.sandbox)
    sandbox = None
    if any(problem.answer_type == "code" for problem in problems.values()):
        from sky_distill.verify.sandbox import require_containment

        sandbox = require_containment(code.backend, code.site_packages)  # fail closed before any code runs
    settings = {"verifier_version": VERIFIER_VERSION, "timeout_s": config.timeout_s, "code": code.__dict__}
    progress = _prepare_progress(stage_dir, settings)
    verdict_list = verify_responses(
        [(t.problem_id, t.sample_index, t.response) for t in traces],
        problems,
        config.timeout_s,
        config.workers,
        code,
        progress,
    )
    verdicts = {(verdict.problem_id, verdict.sample_index): verdict for verdict in verdict_list}
    verified_s = time.monotonic() - started

    trace_filter, filtering = curation_filter(traces, problems, config, paths.benchmarks_dir)
    candidates, dropped = filter_traces(traces, trace_filter)
    kept = select_traces(candidates, verdicts, config.policy, config.k, drop_truncated=False)
    unfiltered = select_traces(candidates, verdicts, "all", None, drop_truncated=False)

    run_name = Path(paths.run_dir).name
    sft = config.sft

    def examples(selected: Sequence[Trace]):
        return (to_sft_example(t, verdicts[t.key], sft.format, sft.system_prompt, run_name) for t in selected)

    write_jsonl(stage_dir / "verdicts.jsonl", verdict_list)
    write_jsonl(stage_dir / "sft" / "verified.jsonl", examples(kept))
    write_jsonl(stage_dir / "sft" / "all.jsonl", examples(unfiltered))
    report = {
        **curation_report(traces, verdicts, kept, problems),
        "verify/all_examples": len(unfiltered),
        "verify/dropped": dict(dropped),
        "verify/filtering": filtering,
        "verify/unreadable_records": [str(error) for error in [*trace_errors, *problem_errors]],
        "verify/seconds": round(time.monotonic() - started, 2),
        "verify/responses_per_s": round(len(traces) / verified_s, 2) if verified_s > 0 else None,
        "verifier_version": VERIFIER_VERSION,
        "policy": config.model_dump(),
        "inputs": {
            "traces": fingerprint_files([generate_dir / "traces.jsonl"]),
            "problems": fingerprint_files([generate_dir / "problems.jsonl"]),
        },
        "provenance": provenance("verify", to_container(cfg)),
    }
    if sandbox is not None:
        report["sandbox"] = sandbox
    write_json_atomic(stage_dir / "report.json", report)
    mark_complete(stage_dir, report)
    (stage_dir / PARTIAL).unlink(missing_ok=True)
    (stage_dir / PARTIAL_SETTINGS).unlink(missing_ok=True)
    return report
