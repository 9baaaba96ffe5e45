"""The verify stage's report: acceptance, statuses, truncation and lengths, overall and per group,
tallied one problem at a time (memory: counters, not traces)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from sky_distill.records import Problem, Trace, Verdict

ERROR_EXAMPLES = 20


def _difficulty(problem: Problem | None) -> Any:
    if problem is None:
        return None
    meta = problem.metadata
    return meta.get("level") or meta.get("difficulty") or meta.get("digits")


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


class LengthTally:
    """Count, mean, median and max of completion tokens, kept as a histogram (bounded by the longest)."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()

    def add(self, tokens: int) -> None:
        self.counts[tokens] += 1

    def summary(self) -> dict[str, Any]:
        count = sum(self.counts.values())
        if not count:
            return {"count": 0}
        values = sorted(self.counts)

        def at(position: int) -> int:
            seen = 0
            for value in values:
                seen += self.counts[value]
                if seen > position:
                    return value
            raise IndexError(position)

        middle = at(count // 2) if count % 2 else (at(count // 2 - 1) + at(count // 2)) / 2
        mean = sum(value * number for value, number in self.counts.items()) / count
        return {"count": count, "mean": round(mean, 1), "median": middle, "max": values[-1]}


class CurationTally:
    """The curation report, accumulated one problem's traces at a time (memory: counters, not traces)."""

    def __init__(self) -> None:
        self.statuses: Counter = Counter()
        self.by_group: dict[str, Counter] = defaultdict(Counter)
        self.problems = self.solved = self.truncated = self.kept = self.errors = 0
        self.error_examples: list[str | None] = []
        self.lengths = {"all": LengthTally(), "correct": LengthTally(), "kept": LengthTally()}

    def add_problem(
        self, pairs: Sequence[tuple[Trace, Verdict]], kept: Sequence[Trace], problem: Problem | None
    ) -> None:
        """One problem's traces with their verdicts, and those of them kept."""
        self.problems += 1
        self.solved += any(verdict.correct for _, verdict in pairs)
        answer_type = problem.answer_type if problem else "unknown"
        for trace, verdict in pairs:
            self.statuses[verdict.status] += 1
            for group in (f"source={trace.source}", f"difficulty={_difficulty(problem)}", f"answer_type={answer_type}"):
                counts = self.by_group[group]
                counts["samples"] += 1
                counts["correct"] += int(verdict.correct)
                counts["truncated"] += int(trace.truncated)
                counts[f"status_{verdict.status}"] += 1
            self.truncated += int(trace.truncated)
            self.lengths["all"].add(trace.completion_tokens)
            if verdict.correct:
                self.lengths["correct"].add(trace.completion_tokens)
            if verdict.status == "error":
                self.errors += 1
                if len(self.error_examples) < ERROR_EXAMPLES:
                    self.error_examples.append(verdict.detail)
        for trace in kept:
            self.kept += 1
            self.lengths["kept"].add(trace.completion_tokens)

    def report(self) -> dict[str, Any]:
        samples = sum(self.statuses.values())
        report: dict[str, Any] = {
            "verify/samples": samples,
            "verify/statuses": dict(self.statuses),
            "verify/acceptance_rate": _rate(self.statuses["correct"], samples),
            "verify/timeout_rate": _rate(self.statuses["timeout"], samples),
            "verify/unparsed_rate": _rate(self.statuses["unparsed"], samples),
            "verify/error_rate": _rate(self.statuses["error"], samples),
            "verify/kept": self.kept,
            "verify/problems": self.problems,
            "verify/problems_solved": self.solved,
            "verify/truncated": self.truncated,
            "verify/truncation_rate": _rate(self.truncated, samples),
            "verify/lengths": {name: tally.summary() for name, tally in self.lengths.items()},
            "verify/errors": self.errors,
            "verify/error_examples": self.error_examples,
            "verify/by_group": {},
        }
        for group, counts in sorted(self.by_group.items()):
            count = counts["samples"]
            summary = {
                "samples": count,
                "correct": counts["correct"],
                "acceptance_rate": _rate(counts["correct"], count),
            }
            summary["truncation_rate"] = _rate(counts["truncated"], count)
            for status in ("timeout", "unparsed", "error"):
                summary[f"{status}_rate"] = _rate(counts[f"status_{status}"], count)
            report["verify/by_group"][group] = summary
        for group, summary in report["verify/by_group"].items():
            if group.startswith("answer_type="):
                kind = group.split("=", 1)[1]
                for name in ("acceptance_rate", "timeout_rate", "error_rate", "unparsed_rate"):
                    report[f"verify/{kind}/{name}"] = summary[name]
        return report
