"""The generation metrics of a set of traces, namespaced `gen/...`. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sky_distill.generate.store import TraceStats


def trace_metrics(stats: Iterable[TraceStats]) -> dict[str, Any]:
    """Problems are counted by the caller; these are per-sample totals and rates."""
    items = list(stats)
    count = len(items)
    completion = sum(item.completion_tokens for item in items)
    return {
        "gen/samples": count,
        "gen/prompt_tokens": sum(item.prompt_tokens for item in items),
        "gen/completion_tokens": completion,
        "gen/mean_completion_tokens": round(completion / count, 1) if count else 0.0,
        "gen/max_completion_tokens": max((item.completion_tokens for item in items), default=0),
        "gen/truncation_rate": round(sum(item.truncated for item in items) / count, 4) if count else 0.0,
        "gen/unclosed_thought_rate": round(sum(not item.thought_closed for item in items) / count, 4) if count else 0.0,
    }


def throughput_metrics(new_samples: int, new_tokens: int, elapsed_s: float) -> dict[str, Any]:
    """This run's speed: completion tokens and samples per second of wall time."""
    return {
        "gen/new_samples": new_samples,
        "gen/new_completion_tokens": new_tokens,
        "gen/elapsed_s": round(elapsed_s, 2),
        "gen/tok_per_s": round(new_tokens / elapsed_s, 1) if elapsed_s > 0 and new_tokens else 0.0,
        "gen/samples_per_s": round(new_samples / elapsed_s, 2) if elapsed_s > 0 and new_samples else 0.0,
    }
