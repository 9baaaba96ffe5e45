"""s1-style budget forcing (Muennighoff et al., 2025): a sampling strategy of the shard writer
(`generate_shard(..., budget=...)`), on the engine that samples plainly otherwise.

Thinking runs until the end-of-thinking delimiter (a stop string) or the thinking budget:
- budget reached: the delimiter and an answer prefix are appended, and the answer is generated;
- thinking ended before `min_thinking_tokens`: the delimiter is replaced by "Wait" and thinking
  goes on (at most `max_extensions` times);
- otherwise the delimiter is put back and the model answers freely.
Every round is one batch handed to the engine (continuous batching stays full). `generate` yields
each sample as a `SampleResult` (thinking-token counts in `extra`); the writer stores it, so a
killed run resumes with the unfinished samples only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sky_distill.config import SamplingConfig, ThinkingBudgetConfig
from sky_distill.errors import SkyDistillError
from sky_distill.generate.engine import Engine, SampleRequest, SampleResult
from sky_distill.records import RecordError, iter_json_objects

log = logging.getLogger(__name__)


@dataclass
class Thought:
    """A sample in progress: its request, the text so far and its token counts."""

    request: SampleRequest
    text: str = ""
    thinking_tokens: int = 0
    generated_tokens: int = 0
    extensions: int = 0
    forced: bool = False
    finish_reason: str = "unknown"
    started: float = 0.0
    answer_prefix: str | None = None  # after a forced end of thinking (None: the forcer's default)


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

    def __init__(
        self, engine: Engine, sampling: SamplingConfig, budget: ThinkingBudgetConfig, answer_type: str = "math"
    ):
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

    def run_round(
        self, thoughts: list[Thought], round_index: int, stop: list[str], budget_of: Callable[[Thought], int]
    ) -> list[SampleResult | None]:
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
        results: list[SampleResult | None] = [None] * len(thoughts)
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
                if not self.take(thought, result):
                    continue
                thought.thinking_tokens += result.completion_tokens
                step = next_thinking_step(thought, result.finish_reason, self.budget)
                if step == "extend":
                    thought.text += self.budget.extend_with
                    thought.extensions += 1
                    still.append(thought)
                elif step == "force":
                    thought.forced = True
                    prefix = self.answer_prefix if thought.answer_prefix is None else thought.answer_prefix
                    thought.text += self.budget.end_of_thinking + prefix
                else:
                    thought.text += self.budget.end_of_thinking
            active, round_index = still, round_index + 1

    def answer(self, thoughts: list[Thought], round_index: int = 1000) -> None:
        ready = [t for t in thoughts if t.finish_reason != "error"]
        results = self.run_round(ready, round_index, list(self.sampling.stop), lambda t: self.budget.answer_tokens)
        for thought, result in zip(ready, results):
            if self.take(thought, result):
                thought.finish_reason = result.finish_reason

    @staticmethod
    def take(thought: Thought, result: SampleResult | None) -> bool:
        """Append a round's text to the thought; a failed round marks it failed (False)."""
        if result is None or result.error:
            thought.finish_reason = "error"
            return False
        thought.text += result.text
        thought.generated_tokens += result.completion_tokens
        return True

    def generate(self, requests: list[SampleRequest], answer_types: Mapping[str, str]) -> Iterator[SampleResult]:
        """Think, then answer, every request (`answer_types`: by problem id, for the answer prefix)."""
        thoughts = [
            Thought(
                request=request,
                started=time.perf_counter(),
                answer_prefix=self.budget.answer_prefix.get(answer_types.get(request.problem_id, ""), ""),
            )
            for request in requests
        ]
        log.info("budget forcing: %d samples, thinking budget %s tokens", len(thoughts), self.budget.thinking_tokens)
        self.think(thoughts)
        self.answer(thoughts)
        for thought in thoughts:
            elapsed = time.perf_counter() - thought.started
            if thought.finish_reason == "error":
                yield SampleResult.failure(thought.request, "a budget-forcing round failed", elapsed)
                continue
            yield SampleResult(
                request=thought.request,
                text=thought.text,
                prompt_tokens=len(thought.request.prompt_token_ids or ()),
                completion_tokens=thought.generated_tokens,
                finish_reason=thought.finish_reason,
                elapsed_s=elapsed,
                extra={
                    "thinking_tokens": thought.thinking_tokens,
                    "extensions": thought.extensions,
                    "forced": thought.forced,
                },
            )


def thinking_path(shard_dir: Path, name: str) -> Path:
    """The side file of a budget-forced shard: thinking-token counts per sample."""
    return shard_dir / f"{name}.thinking.jsonl"


def read_thinking(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Thinking-token counts per (problem, sample), as the writer stored them; unreadable lines are logged."""
    if not path.exists():
        return {}
    out = {}
    for _, row in iter_json_objects(path):
        if isinstance(row, RecordError):
            log.warning("thinking counts unreadable (those samples count as unknown): %s", row)
            continue
        out[(row["problem_id"], row["sample_index"])] = row
    return out
