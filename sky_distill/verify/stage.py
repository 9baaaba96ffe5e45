"""`sky-distill verify`: judge every trace, keep the correct ones, write SFT data and a report.

Inputs: `<run_dir>/generate/{traces,problems}.jsonl`. Outputs in `<run_dir>/verify/`:
`verdicts.jsonl`, `sft/verified.jsonl` (kept by the policy), `sft/all.jsonl` (every trace,
for the no-verification ablation), `report.json` and `COMPLETE.json`.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sky_distill.errors import MissingInputError
from sky_distill.records import Message, Problem, SFTExample, Trace, Verdict, read_jsonl, write_jsonl
from sky_distill.runs import completion, fingerprint_files, mark_complete, write_json_atomic
from sky_distill.verify.checks import VERIFIER_VERSION, check_response
from sky_distill.verify.pool import Failure, Timeout, map_with_timeout
from sky_distill.verify.select import select_traces

log = logging.getLogger(__name__)


def verdict_from_outcome(problem_id: str, sample_index: int, outcome: Any, timeout_s: float) -> Verdict:
    common = {
        "problem_id": problem_id,
        "sample_index": sample_index,
        "verifier": "sky_distill.verify",
        "verifier_version": VERIFIER_VERSION,
    }
    if isinstance(outcome, Timeout):
        return Verdict(**common, correct=False, status="timeout", detail=f"check exceeded {timeout_s}s")
    if isinstance(outcome, Failure):
        return Verdict(**common, correct=False, status="error", detail=outcome.message)
    return Verdict(
        **common,
        correct=bool(outcome["correct"]),
        status=outcome["status"],
        extracted=outcome.get("extracted"),
        detail=outcome.get("detail"),
        elapsed_s=outcome.get("elapsed_s", 0.0),
    )


def verify_responses(
    items: Sequence[tuple[str, int, str]], problems: dict[str, Problem], timeout_s: float, workers: int
) -> list[Verdict]:
    """Verdicts for (problem id, sample index, response) triples, in order, checked in parallel."""
    from tqdm import tqdm

    work, positions, verdicts = [], [], [None] * len(items)
    for position, (problem_id, sample_index, response) in enumerate(items):
        problem = problems.get(problem_id)
        if problem is None:
            verdicts[position] = Verdict(
                problem_id=problem_id,
                sample_index=sample_index,
                correct=False,
                status="error",
                verifier="sky_distill.verify",
                verifier_version=VERIFIER_VERSION,
                detail="no problem with this id",
            )
            continue
        work.append((problem.answer_type, response, problem.answer, problem.tests))
        positions.append(position)
    outcomes = map_with_timeout(check_response, work, timeout_s, workers)
    for position, outcome in tqdm(
        zip(positions, outcomes), total=len(work), desc="verify", unit="response", mininterval=1.0
    ):
        problem_id, sample_index, _ = items[position]
        verdicts[position] = verdict_from_outcome(problem_id, sample_index, outcome, timeout_s)
    return verdicts  # type: ignore[return-value]


def to_sft_example(trace: Trace, verdict: Verdict) -> SFTExample:
    return SFTExample(
        messages=[*trace.messages, Message(role="assistant", content=trace.response)],
        problem_id=trace.problem_id,
        sample_index=trace.sample_index,
        source=trace.source,
        metadata={
            "teacher": trace.model,
            "seed": trace.seed,
            "verdict": verdict.status,
            "completion_tokens": trace.completion_tokens,
        },
    )


def curation_report(
    traces: Sequence[Trace],
    verdicts: dict[tuple[str, int], Verdict],
    kept: Sequence[Trace],
    problems: dict[str, Problem],
) -> dict[str, Any]:
    """Acceptance counts overall, per source and per difficulty, and per-problem coverage."""
    statuses = Counter(verdict.status for verdict in verdicts.values())
    by_group: dict[str, Counter] = defaultdict(Counter)
    solved: set[str] = set()
    for trace in traces:
        correct = verdicts[trace.key].correct
        problem = problems.get(trace.problem_id)
        difficulty = (
            (problem.metadata.get("level") or problem.metadata.get("difficulty") or problem.metadata.get("digits"))
            if problem
            else None
        )
        for group in (f"source={trace.source}", f"difficulty={difficulty}"):
            by_group[group]["samples"] += 1
            by_group[group]["correct"] += int(correct)
        if correct:
            solved.add(trace.problem_id)
    return {
        "verify/samples": len(traces),
        "verify/statuses": dict(statuses),
        "verify/acceptance_rate": round(statuses["correct"] / len(traces), 4) if traces else 0.0,
        "verify/kept": len(kept),
        "verify/problems": len({trace.problem_id for trace in traces}),
        "verify/problems_solved": len(solved),
        "verify/truncated": sum(trace.truncated for trace in traces),
        "verify/by_group": {
            group: {**counts, "acceptance_rate": round(counts["correct"] / counts["samples"], 4)}
            for group, counts in sorted(by_group.items())
        },
    }


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
    traces, trace_errors = read_jsonl(generate_dir / "traces.jsonl", Trace)
    problem_list, problem_errors = read_jsonl(generate_dir / "problems.jsonl", Problem)
    for error in [*trace_errors, *problem_errors]:
        log.warning("unreadable record: %s", error)
    problems = {problem.id: problem for problem in problem_list}

    verdict_list = verify_responses(
        [(t.problem_id, t.sample_index, t.response) for t in traces], problems, config.timeout_s, config.workers
    )
    verdicts = {(verdict.problem_id, verdict.sample_index): verdict for verdict in verdict_list}
    kept = select_traces(traces, verdicts, config.policy, config.k, config.drop_truncated)
    unfiltered = select_traces(traces, verdicts, "all", None, config.drop_truncated)

    write_jsonl(stage_dir / "verdicts.jsonl", verdict_list)
    write_jsonl(stage_dir / "sft" / "verified.jsonl", (to_sft_example(t, verdicts[t.key]) for t in kept))
    write_jsonl(stage_dir / "sft" / "all.jsonl", (to_sft_example(t, verdicts[t.key]) for t in unfiltered))
    report = {
        **curation_report(traces, verdicts, kept, problems),
        "verify/all_examples": len(unfiltered),
        "verify/unreadable_records": [str(error) for error in [*trace_errors, *problem_errors]],
        "verifier_version": VERIFIER_VERSION,
        "policy": config.model_dump(),
        "inputs": {"traces": fingerprint_files([generate_dir / "traces.jsonl"])},
        "provenance": provenance("verify", to_container(cfg)),
    }
    write_json_atomic(stage_dir / "report.json", report)
    mark_complete(stage_dir, report)
    return report
