"""Rejection-sampling policies: which verified traces become training data. Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sky_distill.records import Trace, Verdict

POLICIES = ("all_correct", "first_k", "shortest", "all")


def select_traces(
    traces: Sequence[Trace], verdicts: dict[tuple[str, int], Verdict], policy: str, k: int | None, drop_truncated: bool
) -> list[Trace]:
    """Keep traces by policy: every correct one, the first k correct, the k shortest correct, or all."""
    if policy not in POLICIES:
        raise ValueError(f"verify.policy must be one of {POLICIES}, got {policy!r}")
    by_problem: dict[str, list[Trace]] = defaultdict(list)
    for trace in traces:
        if drop_truncated and trace.truncated:
            continue
        if policy != "all" and not verdicts[trace.key].correct:
            continue
        by_problem[trace.problem_id].append(trace)
    kept: list[Trace] = []
    for problem_id in sorted(by_problem):
        candidates = sorted(by_problem[problem_id], key=lambda trace: trace.sample_index)
        if policy == "shortest":
            candidates.sort(key=lambda trace: (trace.completion_tokens, trace.sample_index))
        if policy in ("first_k", "shortest") and k:
            candidates = candidates[:k]
        kept.extend(candidates)
    return kept
