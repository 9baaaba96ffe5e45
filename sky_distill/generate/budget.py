"""s1-style budget forcing (Muennighoff et al., 2025) through the generate stage's engine.

Thinking runs until the end-of-thinking delimiter (a stop string) or the thinking budget:
- budget reached: the delimiter and an answer prefix are appended, and the answer is generated;
- thinking ended before `min_thinking_tokens`: the delimiter is replaced by "Wait" and thinking
  goes on (at most `max_extensions` times);
- otherwise the delimiter is put back and the model answers freely.
Every round is one batch handed to the engine (continuous batching stays full). A sample is
written when its answer is done, so a killed run resumes with the unfinished samples only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sky_distill.config import ModelConfig, SamplingConfig, ThinkingBudgetConfig
from sky_distill.errors import SkyDistillError
from sky_distill.generate.engine import SampleResult
from sky_distill.generate.sampling import LazyEngine, plan_samples, render_prompts, to_trace
from sky_distill.generate.shards import shard_name
from sky_distill.generate.store import TraceStore
from sky_distill.records import Problem, RecordError, append_jsonl

log = logging.getLogger(__name__)


@dataclass
class Thought:
    """A sample in progress: its request, the text so far and its token counts."""

    request: Any  # SampleRequest
    text: str = ""
    thinking_tokens: int = 0
    generated_tokens: int = 0
    extensions: int = 0
    forced: bool = False
    finish_reason: str = "unknown"
    started: float = 0.0


def round_seed(seed: int, round_index: int) -> int:
    return (seed + 7919 * round_index) % (2**31 - 1)


def next_thinking_step(thought: Thought, finish_reason: str, budget: ThinkingBudgetConfig) -> str:
    """After a thinking round: 'extend' (append Wait), 'force' (budget spent) or 'answer' (ended by itself)."""
    assert budget.thinking_tokens is not None
    if finish_reason == "length" or thought.thinking_tokens >= budget.thinking_tokens:
        return "force"
    if (
        budget.min_thinking_tokens is not None
        and thought.thinking_tokens < budget.min_thinking_tokens
        and thought.extensions < budget.max_extensions
    ):
        return "extend"
    return "answer"


class BudgetForcer:
    """Runs thinking rounds and the answer round for a batch of requests on one engine."""

    def __init__(self, engine: Any, sampling: SamplingConfig, budget: ThinkingBudgetConfig, answer_type: str):
        tokenizer = getattr(engine, "tokenizer", None)
        if tokenizer is None or not hasattr(tokenizer, "encode"):
            raise SkyDistillError("eval.budget needs an engine with a tokenizer (backend: vllm)")
        if budget.thinking_tokens is None:
            raise SkyDistillError("eval.budget.thinking_tokens is not set")
        self.engine, self.tokenizer, self.sampling, self.budget = engine, tokenizer, sampling, budget
        self.answer_prefix = budget.answer_prefix.get(answer_type, "")

    def prompt_ids(self, thought: Thought) -> list[int]:
        ids = list(thought.request.prompt_token_ids)
        if thought.text:
            ids += self.tokenizer.encode(thought.text, add_special_tokens=False)
        return ids

    def room(self, ids: list[int]) -> int | None:
        limit = getattr(self.engine, "max_model_len", None)
        return None if limit is None else limit - len(ids)

    def run_round(self, thoughts: list[Thought], round_index: int, stop: list[str], budget_of) -> list[Any]:
        """One batch: each thought continues from its text; returns the results in thought order."""
        requests, order = [], {}
        sampling = self.sampling.model_copy(update={"n": 1, "stop": stop})
        for position, thought in enumerate(thoughts):
            ids = self.prompt_ids(thought)
            room = self.room(ids)
            max_tokens = budget_of(thought) if room is None else min(budget_of(thought), room)
            request = replace(
                thought.request,
                prompt_token_ids=ids,
                max_tokens=max(max_tokens, 1),
                seed=round_seed(thought.request.seed, round_index),
            )
            requests.append(request)
            order[request.key] = position
        results: list[Any] = [None] * len(thoughts)
        for result in self.engine.generate(requests, sampling):
            results[order[result.request.key]] = result
        return results

    def think(self, thoughts: list[Thought]) -> None:
        """Thinking rounds until every thought is ready to answer."""
        active, round_index = list(thoughts), 0
        while active:
            results = self.run_round(
                active,
                round_index,
                [self.budget.end_of_thinking],
                lambda t: self.budget.thinking_tokens - t.thinking_tokens,
            )
            still = []
            for thought, result in zip(active, results):
                if result is None or result.error:
                    thought.finish_reason = "error"
                    continue
                thought.text += result.text
                thought.thinking_tokens += result.completion_tokens
                thought.generated_tokens += result.completion_tokens
                step = next_thinking_step(thought, result.finish_reason, self.budget)
                if step == "extend":
                    thought.text += self.budget.extend_with
                    thought.extensions += 1
                    still.append(thought)
                elif step == "force":
                    thought.forced = True
                    thought.text += self.budget.end_of_thinking + self.answer_prefix
                else:
                    thought.text += self.budget.end_of_thinking
            active, round_index = still, round_index + 1

    def answer(self, thoughts: list[Thought], round_index: int = 1000) -> None:
        ready = [t for t in thoughts if t.finish_reason != "error"]
        results = self.run_round(ready, round_index, list(self.sampling.stop), lambda t: self.budget.answer_tokens)
        for thought, result in zip(ready, results):
            if result is None or result.error:
                thought.finish_reason = "error"
                continue
            thought.text += result.text
            thought.generated_tokens += result.completion_tokens
            thought.finish_reason = result.finish_reason


def generate_with_budget(
    problems: list[Problem],
    model: ModelConfig,
    sampling: SamplingConfig,
    budget: ThinkingBudgetConfig,
    answer_type: str,
    shard_dir: Path,
    engine: LazyEngine,
) -> dict[str, Any]:
    """Fill the shard's trace file under budget forcing; a side file keeps thinking-token counts."""
    name = shard_name(0, 1)
    store = TraceStore(shard_dir / f"{name}.jsonl")
    keys = [(problem.id, index) for problem in problems for index in range(sampling.n)]
    missing = set(store.missing(keys))
    errors: dict[str, RecordError] = {}
    started = time.perf_counter()
    if missing:
        requests, errors = plan_samples(problems, model, sampling, missing)
        requests, length_errors = render_prompts(requests, engine.get(), budget.thinking_tokens)
        errors.update(length_errors)
        forcer = BudgetForcer(engine.get(), sampling, budget, answer_type)
        thoughts = [Thought(request=request, started=time.perf_counter()) for request in requests]
        log.info("budget forcing: %d samples, thinking budget %s tokens", len(thoughts), budget.thinking_tokens)
        forcer.think(thoughts)
        forcer.answer(thoughts)
        by_id = {problem.id: problem for problem in problems}
        extra = []
        for thought in thoughts:
            if thought.finish_reason == "error":
                continue
            request = thought.request
            result = SampleResult(
                request=request,
                text=thought.text,
                prompt_tokens=len(request.prompt_token_ids or ()),
                completion_tokens=thought.generated_tokens,
                finish_reason=thought.finish_reason,
                elapsed_s=time.perf_counter() - thought.started,
            )
            store.add(to_trace(result, by_id[request.problem_id], engine.get(), sampling))
            extra.append(
                {
                    "problem_id": request.problem_id,
                    "sample_index": request.sample_index,
                    "thinking_tokens": thought.thinking_tokens,
                    "extensions": thought.extensions,
                    "forced": thought.forced,
                }
            )
        store.flush()
        append_jsonl(shard_dir / f"{name}.thinking.jsonl", extra)
    expected = [key for key in keys if key[0] not in errors]
    return {
        "shard": name,
        "expected_samples": len(expected),
        "done_samples": len(store.done & set(expected)),
        "complete": store.done.issuperset(expected),
        "prompt_errors": [str(error) for error in errors.values()],
        "gen/elapsed_s": round(time.perf_counter() - started, 2),
    }


def read_thinking(shard_dir: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Thinking-token counts per (problem, sample) written by `generate_with_budget`."""
    path = shard_dir / f"{shard_name(0, 1)}.thinking.jsonl"
    if not path.exists():
        return {}
    import json

    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out[(row["problem_id"], row["sample_index"])] = row
    return out
