"""The OpenAI-compatible wire format and retry policy (pure; the engine is tested against a real server)."""

import asyncio
import random

import pytest

from sky_distill.config import EngineConfig, SamplingConfig
from sky_distill.generate import openai_protocol as protocol
from sky_distill.generate.engine import SampleRequest
from sky_distill.generate.openai_engine import RateLimiter
from sky_distill.records import Message

REQUEST = SampleRequest(
    "p1", 2, [Message(role="user", content="2+2?")], seed=123, max_tokens=50, prompt_token_ids=[5, 6]
)
API = EngineConfig(backend="openai", base_url="http://127.0.0.1:1/v1")


def test_chat_body_carries_the_sample_seed_and_only_the_options_set():
    body = protocol.request_body(REQUEST, SamplingConfig(temperature=0.6, top_p=0.95), API, "m", chat=True)
    assert body == {
        "model": "m",
        "messages": [{"role": "user", "content": "2+2?"}],
        "max_tokens": 50,
        "n": 1,
        "temperature": 0.6,
        "top_p": 0.95,
        "seed": 123,
    }


def test_body_options_logprobs_templates_and_provider_fields():
    sampling = SamplingConfig(top_k=20, min_p=0.05, stop=["</answer>"], logprobs=3)
    options = API.model_copy(
        update={"max_tokens_param": "max_completion_tokens", "vllm_server": True, "extra_body": {"priority": 1}}
    )
    chat = protocol.request_body(REQUEST, sampling, options, "m", True, "{{ x }}", {"enable_thinking": True})
    assert chat["max_completion_tokens"] == 50 and "max_tokens" not in chat
    assert (chat["top_k"], chat["min_p"], chat["stop"]) == (20, 0.05, ["</answer>"])
    assert chat["logprobs"] is True and chat["top_logprobs"] == 3
    assert chat["return_tokens_as_token_ids"] and chat["return_token_ids"]
    assert chat["chat_template"] == "{{ x }}" and chat["chat_template_kwargs"] == {"enable_thinking": True}
    assert chat["priority"] == 1
    text = protocol.request_body(REQUEST, sampling, API, "m", chat=False)
    assert text["prompt"] == [5, 6] and text["logprobs"] == 3 and "messages" not in text
    with pytest.raises(ValueError, match="token ids"):
        protocol.request_body(SampleRequest("p", 0, [], 1, 5), sampling, API, "m", chat=False)


def test_parse_chat_reads_either_reasoning_field_and_token_id_logprobs():
    position = {"token": "token_id:7", "logprob": -0.5, "top_logprobs": [{"token": "token_id:9", "logprob": -0.1}]}
    payload = {
        "choices": [
            {
                "message": {"content": "4", "reasoning_content": "2+2=4"},
                "finish_reason": "stop",
                "logprobs": {"content": [position]},
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 1},
    }
    parsed = protocol.parse_chat(payload)
    assert (parsed.text, parsed.reasoning, parsed.finish_reason) == ("4", "2+2=4", "stop")
    assert (parsed.prompt_tokens, parsed.completion_tokens) == (11, 1)
    assert parsed.logprobs == [{"9": -0.1, "7": -0.5}] and parsed.token_ids == [7]
    vllm_style = {"choices": [{"message": {"content": None, "reasoning": "hmm"}, "finish_reason": "length"}]}
    parsed = protocol.parse_chat(vllm_style)
    assert (parsed.text, parsed.reasoning, parsed.logprobs, parsed.token_ids) == ("", "hmm", None, None)
    with pytest.raises(protocol.ResponseFormatError):
        protocol.parse_chat({"error": "upstream timeout"})


def test_parse_text_completion_logprobs_per_position():
    payload = {
        "choices": [
            {
                "text": "ab",
                "finish_reason": "length",
                "token_ids": [97, 98],
                "logprobs": {"tokens": ["a", "b"], "token_logprobs": [-1.0, -2.0], "top_logprobs": [{"x": -0.5}, None]},
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    parsed = protocol.parse_text_completion(payload)
    assert parsed.logprobs == [{"x": -0.5, "a": -1.0}, {"b": -2.0}] and parsed.token_ids == [97, 98]


def test_which_failures_are_retried():
    assert all(protocol.is_retryable_status(code) for code in (408, 409, 429, 500, 502, 503, 504))
    assert not any(protocol.is_retryable_status(code) for code in (400, 401, 403, 404, 413, 422))
    assert sorted(protocol.FATAL_STATUS) == [401, 403, 404]
    vllm_says = "This model's maximum context length is 512 tokens. However, your request has 709 input tokens."
    assert protocol.is_context_length_error(400, vllm_says)
    assert protocol.is_context_length_error(400, '{"error": {"code": "context_length_exceeded"}}')
    assert not protocol.is_context_length_error(400, "top_logprobs must be at most 20")
    assert not protocol.is_context_length_error(500, vllm_says)


def test_retry_after_and_backoff():
    assert protocol.retry_after_s("7") == 7.0
    assert protocol.retry_after_s("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert protocol.retry_after_s("soon") is None and protocol.retry_after_s(None) is None
    rng = random.Random(0)
    waits = [protocol.backoff_s(attempt, 1.0, 30.0, rng) for attempt in range(8)]
    assert all(2**a / 2 <= w <= 2**a for a, w in enumerate(waits[:5]))  # doubling, jittered
    assert all(15.0 <= w <= 30.0 for w in waits[5:])  # capped
    assert protocol.backoff_s(3, 1.0, 30.0, rng, retry_after=2.5) == 2.5


def test_rate_limiter_spaces_request_starts():
    async def starts(count: int, per_minute: float) -> list[float]:
        limiter = RateLimiter(per_minute)
        loop = asyncio.get_running_loop()
        times = []
        for _ in range(count):
            await limiter.wait()
            times.append(loop.time())
        return times

    times = asyncio.run(starts(5, per_minute=1200))  # one start per 50 ms on average
    assert times[-1] - times[0] >= 4 * 0.05 - 0.005  # never faster than the limit (slower is allowed)
    assert RateLimiter(None).interval == 0
