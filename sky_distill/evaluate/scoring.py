"""Scoring responses with the verifier (the one curation uses) and summarising them.

`summarize` is pure: avg@n with a standard error and a bootstrap interval, unbiased pass@k and
maj@k with standard errors, and next to them the truncation, unparsed and error rates and the
response lengths, overall and per group (difficulty, level) when the benchmark names one.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sky_distill.config import SandboxConfig
from sky_distill.evaluate.metrics import avg_at_n, bootstrap_interval, maj_at_k, pass_at_k
from sky_distill.records import EvalSample, Problem, Trace
from sky_distill.verify.batch import iter_verdicts


@dataclass(frozen=True)
class Response:
    """One response to score, from the engine (a Trace) or from an external file."""

    problem_id: str
    sample_index: int
    response: str
    completion_tokens: int | None = None  # None: unknown (external file without counts)
    finish_reason: str = "unknown"
    truncated: bool = False
    thinking_tokens: int | None = None

    @classmethod
    def from_trace(cls, trace: Trace, thinking_tokens: int | None = None) -> Response:
        return cls(
            trace.problem_id,
            trace.sample_index,
            trace.response,
            trace.completion_tokens,
            trace.finish_reason,
            trace.truncated,
            thinking_tokens,
        )


def score_responses(
    benchmark: str,
    model_name: str,
    responses: Iterable[Response],
    problems: dict[str, Problem],
    timeout_s: float,
    workers: int,
    code: SandboxConfig | None = None,
) -> Iterator[EvalSample]:
    """One `EvalSample` per response, judged by `sky_distill.verify` in worker processes, in order:
    responses are taken as the workers need them (a bounded window in flight)."""
    waiting: deque[Response] = deque()

    def items() -> Iterator[tuple[str, int, str]]:
        for response in responses:
            waiting.append(response)
            yield response.problem_id, response.sample_index, response.response

    for verdict in iter_verdicts(items(), problems.get, timeout_s, workers, code):
        response = waiting.popleft()
        yield EvalSample(
            benchmark=benchmark,
            problem_id=response.problem_id,
            sample_index=response.sample_index,
            model=model_name,
            response=response.response,
            extracted=verdict.extracted,
            correct=verdict.correct,
            status=verdict.status,
            completion_tokens=response.completion_tokens or 0,
            finish_reason=response.finish_reason,
            truncated=response.truncated,
            detail=verdict.detail,
            thinking_tokens=response.thinking_tokens,
        )


def group_by_problem(samples: Sequence[EvalSample]) -> dict[str, list[EvalSample]]:
    by_problem: dict[str, list[EvalSample]] = {}
    for sample in sorted(samples, key=lambda s: (s.problem_id, s.sample_index)):
        by_problem.setdefault(sample.problem_id, []).append(sample)
    return by_problem


def accuracy_metrics(
    by_problem: dict[str, list[EvalSample]],
    prefix: str,
    ks: Sequence[int],
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    correct = [[s.correct for s in group] for group in by_problem.values()]
    answers = [[s.extracted for s in group] for group in by_problem.values()]
    n = min((len(group) for group in correct), default=0)
    mean, stderr = avg_at_n(correct)
    low, high = bootstrap_interval([sum(c) / len(c) for c in correct if c], resamples, confidence, seed)
    metrics: dict[str, Any] = {
        f"{prefix}/avg@n": mean,
        f"{prefix}/avg@n_stderr": stderr,
        f"{prefix}/avg@n_ci_low": low,
        f"{prefix}/avg@n_ci_high": high,
    }
    for k in sorted(set(ks)):
        if 1 <= k <= n:
            metrics[f"{prefix}/pass@{k}"], metrics[f"{prefix}/pass@{k}_stderr"] = pass_at_k(correct, k)
            if k > 1:
                metrics[f"{prefix}/maj@{k}"], metrics[f"{prefix}/maj@{k}_stderr"] = maj_at_k(answers, correct, k)
    return metrics


def length_and_failure_rates(samples: Sequence[EvalSample], prefix: str, tokens_known: bool) -> dict[str, Any]:
    count = len(samples) or 1
    tokens = [s.completion_tokens for s in samples]
    right = [s.completion_tokens for s in samples if s.correct]
    wrong = [s.completion_tokens for s in samples if not s.correct]
    rates = {
        f"{prefix}/truncation_rate": sum(s.truncated for s in samples) / count,
        f"{prefix}/unparsed_rate": sum(s.status == "unparsed" for s in samples) / count,
        f"{prefix}/timeout_rate": sum(s.status == "timeout" for s in samples) / count,
        f"{prefix}/error_rate": sum(s.status == "error" for s in samples) / count,
        f"{prefix}/mean_tokens": statistics.fmean(tokens) if tokens and tokens_known else None,
        f"{prefix}/median_tokens": statistics.median(tokens) if tokens and tokens_known else None,
        f"{prefix}/mean_tokens_correct": statistics.fmean(right) if right and tokens_known else None,
        f"{prefix}/mean_tokens_incorrect": statistics.fmean(wrong) if wrong and tokens_known else None,
    }
    thinking = [s.thinking_tokens for s in samples if s.thinking_tokens is not None]
    if thinking:
        rates[f"{prefix}/mean_thinking_tokens"] = statistics.fmean(thinking)
    return rates


def summarize(
    samples: Sequence[EvalSample],
    benchmark: str,
    ks: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: dict[str, str] | None = None,
    tokens_known: bool = True,
) -> dict[str, Any]:
    """Every metric of one (model, benchmark), namespaced `eval/<benchmark>/...`; `groups` maps problem id -> group."""
    prefix = f"eval/{benchmark}"
    by_problem = group_by_problem(samples)
    sizes = [len(group) for group in by_problem.values()]
    summary: dict[str, Any] = {
        "n": min(sizes, default=0),
        "n_max": max(sizes, default=0),
        "problems": len(by_problem),
        "samples": len(samples),
        **accuracy_metrics(by_problem, prefix, ks, resamples, confidence, seed),
        **length_and_failure_rates(samples, prefix, tokens_known),
        "tokens_known": tokens_known,
    }
    if groups:
        breakdown: dict[str, Any] = {}
        for group in sorted({groups.get(pid, "?") for pid in by_problem}, key=str):
            members = {pid: s for pid, s in by_problem.items() if groups.get(pid, "?") == group}
            metrics = accuracy_metrics(members, "", (1,), resamples, confidence, seed)
            breakdown[str(group)] = {
                "problems": len(members),
                **{key.lstrip("/"): value for key, value in metrics.items() if not key.startswith("/pass")},
            }
        summary[f"{prefix}/by_group"] = breakdown
    return summary
