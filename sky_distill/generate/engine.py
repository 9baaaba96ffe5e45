"""What every sampling engine takes and returns, and the factory that picks one from config.

An engine yields results as samples finish (not when the whole batch does), so the stage can
write each sample the moment it exists and a killed run loses at most the unflushed tail.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sky_distill.config import ModelConfig, SamplingConfig
from sky_distill.records import Message


@dataclass(frozen=True)
class SampleRequest:
    problem_id: str
    sample_index: int
    messages: list[Message]
    seed: int | None  # None: the engine's own random state (no per-sample seed)
    max_tokens: int
    prompt_token_ids: list[int] | None = None  # rendered by the engine's tokenizer, if it has one

    @property
    def key(self) -> tuple[str, int]:
        return (self.problem_id, self.sample_index)


@dataclass(frozen=True)
class SampleResult:
    request: SampleRequest
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    elapsed_s: float
    reasoning: str | None = None
    logprobs: list[dict[str, float]] | None = None
    token_ids: list[int] | None = None  # the sampled tokens, when log-probs were asked for
    error: str | None = None  # set when the engine gave up on this request: counted, not written
    extra: dict = field(default_factory=dict)

    @classmethod
    def failure(cls, request: SampleRequest, error: str, elapsed_s: float = 0.0, **extra) -> SampleResult:
        return cls(request, "", 0, 0, "error", elapsed_s, error=error, extra=extra)


class Engine(Protocol):
    name: str
    version: str
    model: str
    max_model_len: int | None

    def prompt_token_ids(self, messages: Sequence[Message]) -> list[int] | None: ...

    def generate(self, requests: Sequence[SampleRequest], sampling: SamplingConfig) -> Iterator[SampleResult]: ...

    def close(self) -> None: ...


def make_engine(model: ModelConfig, seed: int) -> Engine:
    """Build the engine named by `model.engine.backend` (vLLM in one process or several, or an API)."""
    if model.engine.backend == "vllm" and model.engine.data_parallel_size > 1:
        from sky_distill.generate.data_parallel import DataParallelEngine

        return DataParallelEngine(model, seed)
    if model.engine.backend == "vllm":
        from sky_distill.generate.vllm_engine import VLLMEngine

        return VLLMEngine(model, seed)
    from sky_distill.generate.openai_engine import OpenAIEngine

    return OpenAIEngine(model, seed)
