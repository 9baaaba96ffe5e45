"""Rejection-sampling policies and trace filters: which verified traces become training data. Pure."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from sky_distill.records import Trace, Verdict

POLICIES = ("all_correct", "first_k", "shortest", "all")


@dataclass(frozen=True)
class TraceFilter:
    """Traces never kept, whatever the policy: truncated, too short or long, excluded problems."""

    drop_truncated: bool = True
    min_tokens: int | None = None
    max_tokens: int | None = None
    excluded_problems: Collection[str] = field(default_factory=frozenset)  # contaminated, near-duplicates
    excluded_traces: Collection[tuple[str, int]] = field(default_factory=frozenset)  # exact duplicates

    def reason(self, trace: Trace) -> str | None:
        """Why a trace is filtered out, or None if it may be kept."""
        if trace.problem_id in self.excluded_problems:
            return "excluded_problem"
        if trace.key in self.excluded_traces:
            return "duplicate"
        if self.drop_truncated and trace.truncated:
            return "truncated"
        if self.min_tokens is not None and trace.completion_tokens < self.min_tokens:
            return "too_short"
        if self.max_tokens is not None and trace.completion_tokens > self.max_tokens:
            return "too_long"
        return None


def filter_traces(traces: Sequence[Trace], trace_filter: TraceFilter) -> tuple[list[Trace], Counter]:
    """The traces that pass the filter, and how many were dropped for each reason."""
    kept, dropped = [], Counter()
    for trace in traces:
        reason = trace_filter.reason(trace)
        if reason is None:
            kept.append(trace)
        else:
            dropped[reason] += 1
    return kept, dropped


def select_traces(
    traces: Sequence[Trace],
    verdicts: dict[tuple[str, int], Verdict],
    policy: str,
    k: int | None,
    drop_truncated: bool = True,
) -> list[Trace]:
    """Keep traces by policy: every correct one, the first k correct, the k shortest correct, or all.

    Output is ordered by problem id, then sample index (or length for `shortest`): stable
    whatever order the traces came in.
    """
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
