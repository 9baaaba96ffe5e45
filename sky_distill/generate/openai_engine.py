"""The OpenAI-compatible API engine: closed teachers (DeepSeek-R1, ...) and `vllm serve` deployments.

`engine.concurrency` requests are in flight at once (asyncio, one HTTP/1.1 connection each),
spaced by `engine.requests_per_minute` when set. A request is retried with exponential
backoff and jitter on 408/409/429/5xx, timeouts and connection errors (a server restarting),
honouring `Retry-After`; one that still fails comes back as a `SampleResult` with `error` set,
which the stage counts and does not write, so a re-run retries it; a prompt the server finds
too long for the model's context is a prompt error of its problem instead (no retry can fix it).
401/403/404 stop the run: no later request can succeed with a wrong key, URL or model name.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Iterator, Sequence
from urllib.parse import urlparse

from sky_distill.config import ModelConfig, SamplingConfig
from sky_distill.errors import SkyDistillError
from sky_distill.generate import openai_protocol as protocol
from sky_distill.generate.engine import SampleRequest, SampleResult
from sky_distill.generate.prompts import render_prompt_ids, resolve_chat_template
from sky_distill.records import Message

log = logging.getLogger(__name__)
WARN_EVERY_S = 10.0


class APIRejectedError(SkyDistillError):
    """The server refused the run itself (bad key, URL or model), not one request."""


class _Finished:
    """Sentinel put on the result queue when the request loop ends."""


class RateLimiter:
    """Spaces request starts evenly at `per_minute` (None: no limit)."""

    def __init__(self, per_minute: float | None):
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.next_start = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        loop = asyncio.get_running_loop()
        start = max(loop.time(), self.next_start)
        self.next_start = start + self.interval
        await asyncio.sleep(start - loop.time())


class OpenAIEngine:
    name = "openai"

    def __init__(self, model: ModelConfig, seed: int):
        options = model.engine
        self.options = options
        self.seed = seed
        self.model = options.served_model_name or model.path
        self.base_url = (options.base_url or "").rstrip("/")
        self.version = f"openai-api@{urlparse(self.base_url).netloc or self.base_url}"
        self.max_model_len = options.max_model_len
        self.chat_template = resolve_chat_template(model.chat_template)
        self.chat_template_kwargs = model.chat_template_kwargs
        self.tokenizer = None
        if options.tokenizer:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(
                options.tokenizer, trust_remote_code=options.trust_remote_code
            )
        elif not options.use_chat_api:
            raise SkyDistillError("engine.use_chat_api=false renders prompts locally: set engine.tokenizer")
        self.api_key = os.environ.get(options.api_key_env)
        if not self.api_key:
            log.info("$%s is not set: requests to %s go without an API key", options.api_key_env, self.base_url)
        self.retries = 0
        self._last_warning = 0.0

    def prompt_token_ids(self, messages: Sequence[Message]) -> list[int] | None:
        if self.tokenizer is None:
            return None
        return render_prompt_ids(self.tokenizer, messages, self.chat_template, self.chat_template_kwargs)

    def generate(self, requests: Sequence[SampleRequest], sampling: SamplingConfig) -> Iterator[SampleResult]:
        """Run the requests on a background event loop; yield each result as it arrives."""
        if not requests:
            return
        results: queue.Queue = queue.Queue()
        stop = threading.Event()

        def loop() -> None:
            try:
                asyncio.run(self._run(list(requests), sampling, results, stop))
            except BaseException as error:  # noqa: BLE001 - handed to the consumer thread
                results.put(error)

        thread = threading.Thread(target=loop, name="sky-distill-openai", daemon=True)
        thread.start()
        try:
            while True:
                item = results.get()
                if isinstance(item, BaseException):
                    raise item
                if item is _Finished:
                    return
                yield item
        finally:
            stop.set()
            thread.join()

    async def _run(self, requests: list[SampleRequest], sampling: SamplingConfig, results, stop) -> None:
        import httpx

        options = self.options
        pending = iter(requests)
        limiter = RateLimiter(options.requests_per_minute)
        rng = random.Random(self.seed)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        timeout = httpx.Timeout(options.request_timeout_s, connect=min(30.0, options.request_timeout_s))
        limits = httpx.Limits(max_connections=options.concurrency, max_keepalive_connections=options.concurrency)

        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout, limits=limits) as client:

            async def worker() -> None:
                for request in pending:
                    results.put(await self._sample(client, request, sampling, limiter, rng))

            async def watch(tasks: list[asyncio.Task]) -> None:
                while not stop.is_set():
                    await asyncio.sleep(0.1)
                for task in tasks:
                    task.cancel()

            tasks = [asyncio.create_task(worker()) for _ in range(options.concurrency)]
            watcher = asyncio.create_task(watch(tasks))
            try:
                await asyncio.gather(*tasks)
                results.put(_Finished)
            except asyncio.CancelledError:
                pass
            except BaseException as error:  # noqa: BLE001 - handed to the consumer thread
                results.put(error)
            finally:
                for task in tasks:
                    task.cancel()
                watcher.cancel()
                await asyncio.gather(*tasks, watcher, return_exceptions=True)

    async def _sample(self, client, request: SampleRequest, sampling: SamplingConfig, limiter, rng) -> SampleResult:
        """One sample, retried until it succeeds, fails for good, or the retries run out."""
        import httpx

        options = self.options
        chat = options.use_chat_api
        path = "/chat/completions" if chat else "/completions"
        body = protocol.request_body(
            request, sampling, options, self.model, chat, self.chat_template, self.chat_template_kwargs
        )
        started = time.perf_counter()
        last_error, retry_after = "", None
        for attempt in range(options.max_retries + 1):
            if attempt:
                self._note_retry(request, last_error)
                wait = protocol.backoff_s(
                    attempt - 1, options.retry_backoff_s, options.retry_backoff_max_s, rng, retry_after
                )
                await asyncio.sleep(wait)
            await limiter.wait()
            retry_after = None
            try:
                response = await client.post(path, json=body)
            except (httpx.TimeoutException, httpx.TransportError) as error:
                last_error = f"{type(error).__name__}: {error}".rstrip(": ")
                continue
            if response.status_code == 200:
                try:
                    parsed = (protocol.parse_chat if chat else protocol.parse_text_completion)(response.json())
                except (ValueError, KeyError, TypeError) as error:
                    last_error = f"malformed response: {error}"
                    continue
                return SampleResult(
                    request=request,
                    text=parsed.text,
                    prompt_tokens=parsed.prompt_tokens,
                    completion_tokens=parsed.completion_tokens,
                    finish_reason=parsed.finish_reason,
                    elapsed_s=time.perf_counter() - started,
                    reasoning=parsed.reasoning,
                    logprobs=parsed.logprobs,
                    token_ids=parsed.token_ids,
                    extra={"attempts": attempt + 1},
                )
            detail = f"HTTP {response.status_code}: {response.text[:300]}".strip()
            if response.status_code in protocol.FATAL_STATUS:
                raise APIRejectedError(
                    f"{self.base_url}{path} answered {detail} (check engine.base_url, "
                    f"engine.served_model_name and ${options.api_key_env})"
                )
            if not protocol.is_retryable_status(response.status_code):
                too_long = protocol.is_context_length_error(response.status_code, response.text)
                elapsed = time.perf_counter() - started
                return SampleResult.failure(request, detail, elapsed, attempts=attempt + 1, prompt_too_long=too_long)
            last_error = detail
            retry_after = protocol.retry_after_s(response.headers.get("retry-after"))
        return SampleResult.failure(
            request,
            f"gave up after {options.max_retries + 1} attempts: {last_error}",
            time.perf_counter() - started,
            attempts=options.max_retries + 1,
        )

    def _note_retry(self, request: SampleRequest, error: str) -> None:
        self.retries += 1
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_S:
            self._last_warning = now
            log.warning(
                "%s: retrying %s/%d (%d retries so far): %s",
                self.base_url,
                request.problem_id,
                request.sample_index,
                self.retries,
                error,
            )

    def close(self) -> None:
        pass
