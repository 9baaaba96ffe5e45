"""The OpenAI-compatible wire format: request bodies, response parsing, retry policy. Pure.

Works with `vllm serve`, SGLang, DeepSeek, OpenAI, Together, OpenRouter and the like. The
thinking of reasoning models comes back in `message.reasoning_content` (DeepSeek) or
`message.reasoning` (vLLM, OpenRouter); both are read.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from dataclasses import dataclass
from typing import Any

from sky_distill.config import EngineConfig, SamplingConfig
from sky_distill.generate.engine import SampleRequest

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
FATAL_STATUS = frozenset({401, 403, 404})  # wrong key, no access, wrong URL or model: stop the run
TOKEN_ID = re.compile(r"^token_id:(\d+)$")


class ResponseFormatError(ValueError):
    """A 200 response without the fields of a completion (a proxy error page, a truncated body)."""


@dataclass(frozen=True)
class Completion:
    text: str
    reasoning: str | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[dict[str, float]] | None = None
    token_ids: list[int] | None = None


def request_body(
    request: SampleRequest,
    sampling: SamplingConfig,
    options: EngineConfig,
    model_name: str,
    chat: bool,
    chat_template: str | None = None,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of one chat or text completion request (one sample, its own seed)."""
    body: dict[str, Any] = {"model": model_name}
    if chat:
        body["messages"] = [message.model_dump() for message in request.messages]
    else:
        if request.prompt_token_ids is None:
            raise ValueError("the completions API needs the prompt's token ids (set engine.tokenizer)")
        body["prompt"] = list(request.prompt_token_ids)
    body[options.max_tokens_param] = request.max_tokens
    body.update(n=1, temperature=sampling.temperature, top_p=sampling.top_p)
    if request.seed is not None:
        body["seed"] = request.seed
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if sampling.top_k > 0:  # not in OpenAI's API; vLLM, SGLang and most open servers take them
        body["top_k"] = sampling.top_k
    if sampling.min_p > 0:
        body["min_p"] = sampling.min_p
    if sampling.logprobs is not None:
        if chat:
            body.update(logprobs=True, top_logprobs=sampling.logprobs)
        else:
            body["logprobs"] = sampling.logprobs
        if options.vllm_server:
            body.update(return_tokens_as_token_ids=True, return_token_ids=True)
    if chat and chat_template:
        body["chat_template"] = chat_template  # honoured by vLLM servers
    if chat and chat_template_kwargs:
        body["chat_template_kwargs"] = dict(chat_template_kwargs)
    body.update(options.extra_body)
    return body


def _token_key(token: str) -> str:
    """`token_id:123` (vLLM with return_tokens_as_token_ids) becomes `123`, as offline vLLM writes it."""
    match = TOKEN_ID.match(token)
    return match.group(1) if match else token


def _usage(payload: dict[str, Any]) -> tuple[int, int]:
    usage = payload.get("usage") or {}
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def _first_choice(payload: Any) -> dict[str, Any]:
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise ResponseFormatError(f"response has no choices: {str(payload)[:200]}")
    return choices[0]


def _sampled_ids(tokens: list[str], choice: dict[str, Any]) -> list[int] | None:
    if isinstance(choice.get("token_ids"), list):
        return [int(token) for token in choice["token_ids"]]
    keys = [_token_key(token) for token in tokens]
    return [int(key) for key in keys] if keys and all(key.isdigit() for key in keys) else None


def parse_chat(payload: Any) -> Completion:
    choice = _first_choice(payload)
    message = choice.get("message") or {}
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    prompt_tokens, completion_tokens = _usage(payload)
    logprobs = token_ids = None
    content = (choice.get("logprobs") or {}).get("content")
    if content:
        logprobs = [
            {
                **{_token_key(top["token"]): float(top["logprob"]) for top in position.get("top_logprobs") or []},
                _token_key(position["token"]): float(position["logprob"]),
            }
            for position in content
        ]
        token_ids = _sampled_ids([position["token"] for position in content], choice)
    return Completion(
        text=message.get("content") or "",
        reasoning=reasoning if isinstance(reasoning, str) else None,
        finish_reason=str(choice.get("finish_reason") or "unknown"),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens or len(token_ids or ()),
        logprobs=logprobs,
        token_ids=token_ids,
    )


def parse_text_completion(payload: Any) -> Completion:
    choice = _first_choice(payload)
    prompt_tokens, completion_tokens = _usage(payload)
    logprobs = token_ids = None
    details = choice.get("logprobs") or {}
    if details.get("tokens"):
        tokens = details["tokens"]
        tops = details.get("top_logprobs") or [{} for _ in tokens]
        logprobs = [
            {
                **{_token_key(token): float(value) for token, value in (top or {}).items()},
                _token_key(token): float(value),
            }
            for token, value, top in zip(tokens, details.get("token_logprobs") or [], tops)
        ]
        token_ids = _sampled_ids(tokens, choice)
    return Completion(
        text=choice.get("text") or "",
        reasoning=None,
        finish_reason=str(choice.get("finish_reason") or "unknown"),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens or len(token_ids or ()),
        logprobs=logprobs,
        token_ids=token_ids,
    )


def is_context_length_error(status: int, text: str) -> bool:
    """A 400 saying the prompt does not fit the model's context (OpenAI, vLLM, DeepSeek wording)."""
    lowered = text.lower()
    return status == 400 and ("context length" in lowered or "context_length" in lowered)


def is_retryable_status(status: int) -> bool:
    """Rate limits, timeouts and server errors are worth another try; other 4xx are not."""
    return status in RETRYABLE_STATUS or status >= 500


def retry_after_s(header: str | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (a number or an HTTP date), or None."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def backoff_s(attempt: int, base_s: float, max_s: float, rng: random.Random, retry_after: float | None = None) -> float:
    """Wait before retry `attempt` (0-based): exponential with jitter, or what the server asked for."""
    if retry_after is not None:
        return min(retry_after, max_s * 4)
    ceiling = min(max_s, base_s * 2**attempt)
    return ceiling * (0.5 + rng.random() / 2)
