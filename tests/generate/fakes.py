"""A small stand-in engine for fast unit tests of the stage's bookkeeping (the real engines have
their own tests): deterministic text from each sample's seed, optional failures and delay."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence

from sky_distill.config import SamplingConfig
from sky_distill.generate.engine import SampleRequest, SampleResult
from sky_distill.records import Message


class FakeEngine:
    name = "fake"
    version = "fake==1"
    model = "fake-model"

    def __init__(self, max_model_len: int | None = 64, fail: set[tuple[str, int]] = frozenset(), delay_s: float = 0.0):
        self.max_model_len = max_model_len
        self.fail = set(fail)
        self.delay_s = delay_s
        self.calls: list[list[tuple[str, int]]] = []

    def prompt_token_ids(self, messages: Sequence[Message]) -> list[int]:
        return list(" ".join(message.content for message in messages).encode())

    def generate(self, requests: Sequence[SampleRequest], sampling: SamplingConfig) -> Iterator[SampleResult]:
        self.calls.append([request.key for request in requests])
        for request in reversed(requests):  # finish order differs from submission order
            if self.delay_s:
                time.sleep(self.delay_s)
            if request.key in self.fail:
                yield SampleResult.failure(request, "HTTP 500: injected")
                continue
            rng = random.Random(request.seed)
            length = rng.randint(1, request.max_tokens)
            yield SampleResult(
                request=request,
                text=" ".join(str(rng.randint(0, 9)) for _ in range(length)),
                prompt_tokens=len(request.prompt_token_ids or ()),
                completion_tokens=length,
                finish_reason="length" if length == request.max_tokens else "stop",
                elapsed_s=0.001,
            )

    def close(self) -> None:
        pass


class FakeLazyEngine:
    """LazyEngine's interface around a FakeEngine; counts how often the engine was needed."""

    def __init__(self, engine: FakeEngine):
        self.engine = engine
        self.gets = 0

    @property
    def started(self) -> bool:
        return self.gets > 0

    def get(self) -> FakeEngine:
        self.gets += 1
        return self.engine

    def close(self) -> None:
        pass
