"""Sampling one shard: plan the missing (problem, sample) requests, render prompts, stream the engine's
results into the trace store, and write the shard's summary and error file (`generate_shard`).

Shared by the generate stage (teacher traces) and the eval stage (model samples on a benchmark).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sky_distill.config import GenerateConfig, ModelConfig, SamplingConfig, ThinkingBudgetConfig
from sky_distill.generate.budget import BudgetForcer, thinking_path
from sky_distill.generate.engine import Engine, SampleRequest, SampleResult, make_engine
from sky_distill.generate.merge import shard_summary_path
from sky_distill.generate.prompts import PromptError, messages_for, sample_seed
from sky_distill.generate.settings import trace_settings
from sky_distill.generate.shards import shard_name
from sky_distill.generate.store import TraceStore
from sky_distill.generate.summary import throughput_metrics, trace_metrics
from sky_distill.records import Problem, RecordError, Trace, append_jsonl, write_jsonl
from sky_distill.runs import fingerprint_object, read_json, write_json_atomic
from sky_distill.settings_guard import check_settings

log = logging.getLogger(__name__)
ERROR_EXAMPLES = 10
Locations = dict[str, tuple[str, int]]  # problem id -> (file, line) it was read from


def where(problem_id: str, locations: Locations | None, index: int) -> tuple[str, int]:
    """The file and line a problem came from, or its position in the problem list."""
    if locations and problem_id in locations:
        return locations[problem_id]
    return "<problems>", index + 1


def plan_samples(
    problems: list[Problem],
    model: ModelConfig,
    sampling: SamplingConfig,
    missing: set[tuple[str, int]],
    locations: Locations | None = None,
    per_sample_seeds: bool = True,
) -> tuple[list[SampleRequest], dict[str, RecordError]]:
    """One request per missing (problem, sample index), each with its own stable seed (unless
    `per_sample_seeds` is off); and, by problem id, the problems whose prompt cannot be built.
    A problem's samples stay adjacent (they share its prompt's cache)."""
    requests: list[SampleRequest] = []
    errors: dict[str, RecordError] = {}
    for index, problem in enumerate(problems):
        indices = [sample for sample in range(sampling.n) if (problem.id, sample) in missing]
        if not indices:
            continue
        try:
            messages = messages_for(problem, model)
        except PromptError as error:
            errors[problem.id] = RecordError(
                *where(problem.id, locations, index), error.field, f"id {problem.id!r}: {error}"
            )
            continue
        for sample_index in indices:
            seed = sample_seed(sampling.seed, problem.id, sample_index) if per_sample_seeds else None
            requests.append(SampleRequest(problem.id, sample_index, messages, seed, sampling.max_tokens))
    return requests, errors


def render_prompts(
    requests: list[SampleRequest],
    engine: Engine,
    max_tokens: int,
    locations: Locations | None = None,
) -> tuple[list[SampleRequest], dict[str, RecordError]]:
    """Attach prompt token ids; a prompt that leaves no room to answer is an error (one per problem)."""
    rendered: list[SampleRequest] = []
    errors: dict[str, RecordError] = {}
    tokens: dict[str, list[int] | None] = {}
    positions: dict[str, int] = {}
    for request in requests:
        problem_id = request.problem_id
        if problem_id not in tokens:
            positions[problem_id] = len(positions)
            tokens[problem_id] = engine.prompt_token_ids(request.messages)
            token_ids = tokens[problem_id]
            if token_ids is not None and engine.max_model_len is not None and len(token_ids) >= engine.max_model_len:
                errors[problem_id] = RecordError(
                    *where(problem_id, locations, positions[problem_id]),
                    "problem",
                    f"id {problem_id!r}: prompt of {len(token_ids)} tokens leaves no room to answer "
                    f"within max_model_len {engine.max_model_len}",
                )
        token_ids = tokens[problem_id]
        if token_ids is None or engine.max_model_len is None:
            rendered.append(request)
        elif len(token_ids) < engine.max_model_len:
            room = engine.max_model_len - len(token_ids)
            rendered.append(replace(request, prompt_token_ids=token_ids, max_tokens=min(max_tokens, room)))
    return rendered, errors


def to_trace(
    result: SampleResult, problem: Problem, engine: Engine, sampling: SamplingConfig, model: ModelConfig | None = None
) -> Trace:
    request = result.request
    return Trace(
        problem_id=request.problem_id,
        sample_index=request.sample_index,
        source=problem.source,
        messages=request.messages,
        response=result.text,
        model=engine.model,
        engine=engine.name,
        engine_version=engine.version,
        sampling=sampling.model_dump(),
        seed=request.seed,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        finish_reason=result.finish_reason,
        truncated=result.finish_reason == "length",
        elapsed_s=round(result.elapsed_s, 3),
        reasoning=result.reasoning,
        logprobs=result.logprobs,
        token_ids=result.token_ids,
        thought_format=model.thought_format if model else None,
    )


class LazyEngine:
    """Builds the engine on first use only, so a complete shard costs no engine start-up."""

    def __init__(self, model: ModelConfig, seed: int):
        self.model, self.seed = model, seed
        self._engine: Engine | None = None

    @property
    def started(self) -> bool:
        return self._engine is not None

    def get(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.model, self.seed)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None


@dataclass
class RunCounts:
    """What one run of a shard did."""

    new_samples: int = 0
    new_tokens: int = 0
    truncated: int = 0
    failures: list[SampleResult] = field(default_factory=list)  # retried by the next run
    rejected_prompts: dict[str, str] = field(default_factory=dict)  # problem id -> why the server refused it
    thinking: list[dict[str, Any]] = field(default_factory=list)  # budget forcing: thinking counts of stored samples
    elapsed_s: float = 0.0


def stream_samples(
    requests: list[SampleRequest],
    results: Iterable[SampleResult],
    engine: Engine,
    sampling: SamplingConfig,
    model: ModelConfig,
    problems: dict[str, Problem],
    store: TraceStore,
    label: str,
) -> RunCounts:
    """Store each sample of `results` (the engine's, or a strategy's over it) as it finishes."""
    from tqdm import tqdm

    counts = RunCounts()
    started = time.perf_counter()
    interactive = sys.stderr.isatty()
    with tqdm(
        total=len(requests), desc=label, unit="sample", mininterval=1.0 if interactive else 30.0, dynamic_ncols=True
    ) as progress:
        for result in results:
            if result.error and result.extra.get("prompt_too_long"):
                counts.rejected_prompts[result.request.problem_id] = result.error
            elif result.error:
                counts.failures.append(result)
                log.debug("%s/%d failed: %s", result.request.problem_id, result.request.sample_index, result.error)
            elif store.add(to_trace(result, problems[result.request.problem_id], engine, sampling, model)):
                counts.new_samples += 1
                if "thinking_tokens" in result.extra:
                    counts.thinking.append(
                        {
                            "problem_id": result.request.problem_id,
                            "sample_index": result.request.sample_index,
                            **result.extra,
                        }
                    )
                counts.new_tokens += result.completion_tokens
                counts.truncated += result.finish_reason == "length"
            progress.update(1)
            if progress.n % 16 == 0 or progress.n == len(requests):
                elapsed = max(time.perf_counter() - started, 1e-9)
                progress.set_postfix(
                    tok_s=f"{counts.new_tokens / elapsed:.0f}",
                    truncated=counts.truncated,
                    failed=len(counts.failures),
                    refresh=False,
                )
    counts.elapsed_s = time.perf_counter() - started
    if counts.failures:
        log.warning(
            "%s: %d requests failed (not written; a re-run retries them), e.g. %s",
            label,
            len(counts.failures),
            counts.failures[0].error,
        )
    return counts


def exclusion_key(problem: Problem, model: ModelConfig, settings_fingerprint: str) -> str:
    """What decides whether a problem's prompt fits: its text, the prompt settings, max_model_len."""
    return fingerprint_object(
        [problem.problem, problem.answer_type, problem.choices, model.engine.max_model_len, settings_fingerprint]
    )


def previous_summary(summary_path: Path) -> dict[str, Any]:
    """The last run's summary: its unpromptable problems (a re-run need not start the engine to find
    them again) and the engine that wrote the traces."""
    return read_json(summary_path) if summary_path.exists() else {}


def error_rows(kind: str, errors: list[RecordError]) -> list[dict[str, Any]]:
    return [
        {"kind": kind, "path": error.path, "line": error.line, "field": error.field, "message": error.message}
        for error in errors
    ]


def sample_missing(
    problems: list[Problem],
    model: ModelConfig,
    config: GenerateConfig,
    missing: set[tuple[str, int]],
    store: TraceStore,
    engine: LazyEngine,
    locations: Locations | None,
    label: str,
    budget: ThinkingBudgetConfig | None = None,
) -> tuple[RunCounts, dict[str, RecordError]]:
    """Generate the missing samples into the store (plainly, or under budget forcing); also return,
    by problem id, the unpromptable problems."""
    sampling = config.sampling
    requests, prompt_errors = plan_samples(problems, model, sampling, missing, locations, config.per_sample_seeds)
    if requests:
        room = budget.thinking_tokens if budget is not None else sampling.max_tokens  # what the first round needs
        requests, length_errors = render_prompts(requests, engine.get(), room, locations)
        prompt_errors.update(length_errors)
    log.info("%s: %d samples to generate (%d stored before)", label, len(requests), len(store.done))
    if not requests:
        return RunCounts(), prompt_errors
    by_id = {problem.id: problem for problem in problems}
    if budget is None:
        results = engine.get().generate(requests, sampling)
    else:
        forcer = BudgetForcer(engine.get(), sampling, budget)
        results = forcer.generate(requests, {problem.id: problem.answer_type for problem in problems})
    counts = stream_samples(requests, results, engine.get(), sampling, model, by_id, store, label)
    position = {problem.id: index for index, problem in enumerate(problems)}
    for problem_id, reason in counts.rejected_prompts.items():  # too long, as the server counts
        prompt_errors[problem_id] = RecordError(
            *where(problem_id, locations, position[problem_id]), "problem", f"id {problem_id!r}: {reason}"
        )
    return counts, prompt_errors


def shard_metrics(
    store: TraceStore, expected: list[tuple[str, int]], counts: RunCounts, problem_errors: int, prompt_errors: int
) -> dict[str, Any]:
    """Completion bookkeeping and the `gen/` metrics of a shard: all its samples, and this run's speed."""
    done = [key for key in expected if key in store.done]
    return {
        "complete": len(done) == len(expected),
        "expected_samples": len(expected),
        "done_samples": len(done),
        "gen/problems": len({problem_id for problem_id, _ in expected}),
        **trace_metrics(store.stats[key] for key in done),
        **throughput_metrics(counts.new_samples, counts.new_tokens, counts.elapsed_s),
        "gen/failed_requests": len(counts.failures),
        "gen/prompt_errors": prompt_errors,
        "gen/problem_errors": problem_errors,
        "gen/unreadable_lines": len(store.errors),
        "gen/duplicate_lines": store.duplicates,
        "gen/torn_bytes_discarded": store.torn_bytes,
    }


def error_file_rows(
    problem_errors: list[RecordError],
    excluded: dict[str, dict[str, str]],
    failures: list[SampleResult],
    unreadable: list[RecordError],
) -> list[dict[str, Any]]:
    """Every rejected record, unpromptable problem, failed request and unreadable stored line."""
    requests = [
        {
            "kind": "request",
            "problem_id": f.request.problem_id,
            "sample_index": f.request.sample_index,
            "message": f.error,
        }
        for f in failures
    ]
    prompts = [
        {"kind": "prompt", "problem_id": pid, "message": entry["error"]} for pid, entry in sorted(excluded.items())
    ]
    return error_rows("problem", problem_errors) + prompts + requests + error_rows("stored_line", unreadable)


def generate_shard(
    problems: list[Problem],
    model: ModelConfig,
    config: GenerateConfig,
    shard_dir: Path,
    engine: LazyEngine,
    problem_errors: list[RecordError] | None = None,
    locations: Locations | None = None,
    provenance: dict[str, Any] | None = None,
    budget: ThinkingBudgetConfig | None = None,
) -> dict[str, Any]:
    """Fill one shard's trace file with the missing samples; write and return its summary. With a
    thinking `budget`, samples are budget-forced and their thinking counts go to a side file."""
    name = shard_name(config.shard_index, config.shard_count)
    sampling = config.sampling
    summary_path = shard_summary_path(shard_dir, name)
    problem_errors = list(problem_errors or [])
    with TraceStore(
        shard_dir / f"{name}.jsonl", config.flush_every, config.flush_seconds, topk=sampling.logprobs
    ) as store:
        settings = trace_settings(model, sampling, config.per_sample_seeds)
        if budget is not None:
            settings["budget"] = budget.model_dump()
        fingerprint = check_settings(shard_dir / f"{name}.settings.json", settings, f"{name} in {shard_dir}")
        previous = previous_summary(summary_path)
        keys = {problem.id: exclusion_key(problem, model, fingerprint) for problem in problems}
        excluded = {
            pid: entry for pid, entry in previous.get("excluded_problems", {}).items() if keys.get(pid) == entry["key"]
        }
        to_sample = [problem for problem in problems if problem.id not in excluded]
        missing = set(store.missing((p.id, index) for p in to_sample for index in range(sampling.n)))
        counts = RunCounts()
        if missing:
            counts, prompt_errors = sample_missing(
                to_sample, model, config, missing, store, engine, locations, f"generate {name}", budget
            )
            excluded.update({pid: {"key": keys[pid], "error": str(error)} for pid, error in prompt_errors.items()})
        expected = [(p.id, index) for p in problems if p.id not in excluded for index in range(sampling.n)]
        summary = {
            "shard": name,
            "shard_index": config.shard_index,
            "shard_count": config.shard_count,
            "n": sampling.n,
            **shard_metrics(store, expected, counts, len(problem_errors), len(excluded)),
        }
    if counts.thinking:  # after the traces they describe are on disk
        append_jsonl(thinking_path(shard_dir, name), counts.thinking)
    if engine.started and hasattr(engine.get(), "retries"):
        summary["gen/api_retries"] = engine.get().retries
    errors_path = shard_dir / f"{name}.errors.jsonl"
    write_jsonl(errors_path, error_file_rows(problem_errors, excluded, counts.failures, store.errors))
    examples = [str(error) for error in problem_errors] + [entry["error"] for entry in excluded.values()]
    examples += [f"{f.request.problem_id}/{f.request.sample_index}: {f.error}" for f in counts.failures]
    summary.update(
        errors_file=str(errors_path),
        error_examples=examples[:ERROR_EXAMPLES],
        excluded_problems=excluded,
        settings_fingerprint=fingerprint,
        problem_fingerprint=fingerprint_object(sorted(problem.id for problem in problems)),
    )
    if engine.started:
        running = engine.get()
        summary["engine"] = {"name": running.name, "version": running.version, "model": running.model}
    elif "engine" in previous:
        summary["engine"] = previous["engine"]
    if provenance is not None:
        summary["provenance"] = provenance
    write_json_atomic(summary_path, summary)
    return summary
