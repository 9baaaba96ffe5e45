"""Data parallel vLLM: `engine.data_parallel_size` engine processes, each on its own devices.

The parent renders prompts (with the model's tokenizer), splits the requests by problem across
the workers (the samples of a problem share one prefix cache), and streams back their results
as they finish; it stays the only writer of the shard file. Worker i sees GPUs
[i*tp, (i+1)*tp) of the visible ones (tp = tensor_parallel_size), or, on CPU, its own cores.
"""

from __future__ import annotations

import logging
import os
import queue
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

from sky_distill.config import ModelConfig, SamplingConfig
from sky_distill.errors import SkyDistillError
from sky_distill.generate.engine import SampleRequest, SampleResult
from sky_distill.generate.prompts import render_prompt_ids, resolve_chat_template
from sky_distill.records import Message

log = logging.getLogger(__name__)
POLL_S = 5.0


class EngineWorkerError(RuntimeError):
    """A data-parallel engine process failed or died; finished samples are already written."""


def split_by_problem(requests: Sequence[SampleRequest], parts: int) -> list[list[SampleRequest]]:
    """Requests in `parts` groups of near-equal size, keeping each problem's samples together. Pure."""
    by_problem: dict[str, list[SampleRequest]] = {}
    for request in requests:
        by_problem.setdefault(request.problem_id, []).append(request)
    groups: list[list[SampleRequest]] = [[] for _ in range(parts)]
    for problem_requests in by_problem.values():
        min(groups, key=len).extend(problem_requests)
    return groups


def worker_environments(size: int, tensor_parallel: int, gpus: list[str], cpus: list[int]) -> list[dict[str, str]]:
    """The environment of each worker: its slice of GPUs, or on CPU its own cores. Pure."""
    if gpus:
        needed = size * tensor_parallel
        if needed > len(gpus):
            raise SkyDistillError(
                f"engine.data_parallel_size {size} x tensor_parallel_size {tensor_parallel} needs {needed} GPUs, "
                f"{len(gpus)} visible"
            )
        return [
            {"CUDA_VISIBLE_DEVICES": ",".join(gpus[rank * tensor_parallel : (rank + 1) * tensor_parallel])}
            for rank in range(size)
        ]
    if len(cpus) < size or tensor_parallel > 1:
        return [{} for _ in range(size)]
    per_worker = len(cpus) // size
    return [
        {"VLLM_CPU_OMP_THREADS_BIND": ",".join(str(cpu) for cpu in cpus[rank * per_worker : (rank + 1) * per_worker])}
        for rank in range(size)
    ]


def load_tokenizer(model: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        model.path, revision=model.revision, trust_remote_code=model.engine.trust_remote_code
    )


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies, so no orphan keeps a GPU."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def serve(rank: int, model: ModelConfig, seed: int, environment: dict[str, str], inbox, outbox) -> None:
    """A worker process: one VLLMEngine answering jobs from `inbox` until it receives None."""
    _die_with_parent()
    os.environ.update(environment)
    try:
        from sky_distill.generate.vllm_engine import VLLMEngine

        engine = VLLMEngine(model, seed)
        outbox.put(("ready", rank, (engine.max_model_len, engine.version)))
        while (job := inbox.get()) is not None:
            job_id, requests, sampling = job
            for result in engine.generate(requests, sampling):
                outbox.put(("result", rank, (job_id, result)))
            outbox.put(("done", rank, job_id))
        engine.close()
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        outbox.put(("failed", rank, traceback.format_exc()))


class DataParallelEngine:
    name = "vllm"

    def __init__(self, model: ModelConfig, seed: int):
        import multiprocessing

        options = model.engine
        self.model = model.path
        self.tokenizer = load_tokenizer(model)
        self.chat_template = resolve_chat_template(model.chat_template)
        self.chat_template_kwargs = model.chat_template_kwargs
        environments = worker_environments(
            options.data_parallel_size, options.tensor_parallel_size, visible_gpus(), sorted(os.sched_getaffinity(0))
        )
        context = multiprocessing.get_context("spawn")
        self.outbox = context.Queue()
        self.inboxes = [context.Queue() for _ in environments]
        self.processes = [
            context.Process(
                target=serve,
                args=(rank, model, seed, environment, self.inboxes[rank], self.outbox),
                name=f"sky-distill-engine-{rank}",
            )
            for rank, environment in enumerate(environments)
        ]
        self._job = 0
        for process in self.processes:
            process.start()
        log.info("started %d data-parallel vLLM engines", len(self.processes))
        try:
            ready = {
                rank: info for kind, rank, info in self._messages(set(range(len(self.processes)))) if kind == "ready"
            }
        except BaseException:
            self.close()
            raise
        self.max_model_len = min(length for length, _ in ready.values())
        self.version = ready[0][1]

    def prompt_token_ids(self, messages: Sequence[Message]) -> list[int]:
        return render_prompt_ids(self.tokenizer, messages, self.chat_template, self.chat_template_kwargs)

    def _messages(self, waiting: set[int]) -> Iterator[tuple[str, int, Any]]:
        """Messages from workers until each rank in `waiting` has said `ready` or `done`; raise if one fails."""
        while waiting:
            try:
                kind, rank, payload = self.outbox.get(timeout=POLL_S)
            except queue.Empty:
                for rank in waiting:
                    if not self.processes[rank].is_alive():
                        code = self.processes[rank].exitcode
                        raise EngineWorkerError(f"data-parallel engine {rank} died (exit code {code})") from None
                continue
            if kind == "failed":
                raise EngineWorkerError(f"data-parallel engine {rank} failed:\n{payload}")
            if kind == "ready" or (kind == "done" and payload == self._job):
                waiting.discard(rank)
            yield kind, rank, payload

    def generate(self, requests: Sequence[SampleRequest], sampling: SamplingConfig) -> Iterator[SampleResult]:
        self._job += 1
        busy = set()
        for rank, group in enumerate(split_by_problem(requests, len(self.processes))):
            if group:
                self.inboxes[rank].put((self._job, group, sampling))
                busy.add(rank)
        for kind, _, payload in self._messages(busy):
            if kind == "result" and payload[0] == self._job:  # results of an abandoned job are dropped
                yield payload[1]

    def close(self) -> None:
        for inbox, process in zip(self.inboxes, self.processes):
            if process.is_alive():
                inbox.put(None)
        for process in self.processes:
            process.join(timeout=60)
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)


def visible_gpus() -> list[str]:
    """The GPU ids this process may use (CUDA_VISIBLE_DEVICES or all), empty without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [gpu.strip() for gpu in visible.split(",") if gpu.strip()]
    return [str(index) for index in range(torch.cuda.device_count())]
