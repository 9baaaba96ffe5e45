"""`sky-distill generate`: the teacher samples n traces per problem of one shard, resumably.

Output: `<run_dir>/generate/shards/shard-i-of-N.jsonl` (one Trace per line, append-only),
its summary `shard-i-of-N.summary.json`, and, once every shard is complete, the merged
`traces.jsonl` with `COMPLETE.json`. Re-running generates only the missing samples.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sky_distill.config import GenerateConfig, ModelConfig, SamplingConfig, TaskConfig
from sky_distill.generate.engine import Engine, SampleRequest, SampleResult, make_engine
from sky_distill.generate.merge import merge_shards, shard_summary_path
from sky_distill.generate.prompts import build_messages, sample_seed
from sky_distill.generate.shards import select_shard, shard_name
from sky_distill.generate.store import TraceStore
from sky_distill.models.reference import check_model_reference
from sky_distill.records import Problem, RecordError, Trace, write_jsonl
from sky_distill.runs import fingerprint_object, write_json_atomic

log = logging.getLogger(__name__)


def plan_requests(
    problems: list[Problem], model: ModelConfig, sampling: SamplingConfig, missing: set[tuple[str, int]]
) -> list[SampleRequest]:
    """One request per missing (problem, sample index), each with its own stable seed."""
    requests = []
    for problem in problems:
        messages = build_messages(problem, model.prompt_template, model.system_prompt)
        for sample_index in range(sampling.n):
            if (problem.id, sample_index) in missing:
                seed = sample_seed(sampling.seed, problem.id, sample_index)
                requests.append(SampleRequest(problem.id, sample_index, messages, seed, sampling.max_tokens))
    return requests


def render_requests(
    requests: list[SampleRequest], engine: Engine, max_tokens: int
) -> tuple[list[SampleRequest], list[RecordError]]:
    """Attach prompt token ids; a prompt that leaves no room to answer is an error, not a request."""
    from dataclasses import replace

    rendered, errors = [], []
    cache: dict[str, list[int] | None] = {}
    for request in requests:
        if request.problem_id not in cache:
            cache[request.problem_id] = engine.prompt_token_ids(request.messages)
        token_ids = cache[request.problem_id]
        if token_ids is None or engine.max_model_len is None:
            rendered.append(request)
            continue
        room = engine.max_model_len - len(token_ids)
        if room <= 0:
            errors.append(
                RecordError(
                    request.problem_id,
                    0,
                    "problem",
                    f"prompt of {len(token_ids)} tokens does not fit max_model_len {engine.max_model_len}",
                )
            )
            continue
        rendered.append(replace(request, prompt_token_ids=token_ids, max_tokens=min(max_tokens, room)))
    return rendered, errors


def to_trace(result: SampleResult, problem: Problem, engine: Engine, sampling: SamplingConfig) -> Trace:
    request = result.request
    return Trace(
        problem_id=request.problem_id,
        sample_index=request.sample_index,
        source=problem.source,
        messages=request.messages,
        response=result.text,
        model=engine.model,
        engine=engine.name,
        engine_version=engine.version,
        sampling=sampling.model_dump(),
        seed=request.seed,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        finish_reason=result.finish_reason,
        truncated=result.finish_reason == "length",
        elapsed_s=round(result.elapsed_s, 3),
        reasoning=result.reasoning,
        logprobs=result.logprobs,
    )


class LazyEngine:
    """Builds the engine on first use only, so a complete shard costs no engine start-up."""

    def __init__(self, model: ModelConfig, seed: int):
        self.model, self.seed = model, seed
        self._engine: Engine | None = None

    def get(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.model, self.seed)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None


def generate_shard(
    problems: list[Problem], model: ModelConfig, config: GenerateConfig, shard_dir: Path, engine: LazyEngine
) -> dict[str, Any]:
    """Fill one shard's trace file with the missing samples; return its summary."""
    from tqdm import tqdm

    name = shard_name(config.shard_index, config.shard_count)
    store = TraceStore(shard_dir / f"{name}.jsonl")
    sampling = config.sampling
    keys = [(problem.id, index) for problem in problems for index in range(sampling.n)]
    missing = set(store.missing(keys))
    errors: list[RecordError] = []
    failures = 0
    new_tokens = 0
    started = time.perf_counter()
    if missing:
        requests = plan_requests(problems, model, sampling, missing)
        requests, errors = render_requests(requests, engine.get(), sampling.max_tokens)
        by_id = {problem.id: problem for problem in problems}
        log.info(
            "%s: %d of %d samples to generate (%d done before)",
            name,
            len(requests),
            len(keys),
            len(keys) - len(missing),
        )
        with tqdm(total=len(requests), desc=f"generate {name}", unit="sample", mininterval=1.0) as progress:
            for result in engine.get().generate(requests, sampling):
                if result.error:
                    failures += 1
                    log.warning(
                        "%s/%d failed: %s", result.request.problem_id, result.request.sample_index, result.error
                    )
                else:
                    store.add(to_trace(result, by_id[result.request.problem_id], engine.get(), sampling))
                    new_tokens += result.completion_tokens
                progress.update(1)
                progress.set_postfix(
                    tok_per_s=f"{new_tokens / max(time.perf_counter() - started, 1e-9):.0f}", refresh=False
                )
        store.flush()
    elapsed = time.perf_counter() - started
    unreachable = {error.path for error in errors}
    expected = [key for key in keys if key[0] not in unreachable]
    summary = {
        "shard": name,
        "shard_index": config.shard_index,
        "shard_count": config.shard_count,
        "problems": len(problems),
        "expected_samples": len(expected),
        "done_samples": len(store.done & set(expected)),
        "failed_requests": failures,
        "prompt_errors": [str(error) for error in errors],
        "torn_bytes_discarded": store.torn_bytes,
        "unreadable_lines": [str(error) for error in store.errors],
        "gen/new_completion_tokens": new_tokens,
        "gen/elapsed_s": round(elapsed, 2),
        "gen/tok_per_s": round(new_tokens / elapsed, 1) if elapsed and new_tokens else None,
        "complete": store.done.issuperset(expected),
        "problem_fingerprint": fingerprint_object(sorted(problem.id for problem in problems)),
    }
    write_json_atomic(shard_summary_path(shard_dir, name), summary)
    return summary


def run(cfg: Any) -> dict[str, Any]:
    from sky_distill.config import stage_config, to_container
    from sky_distill.runs import provenance

    typed = stage_config(cfg, "generate")
    teacher, task, config, paths = typed["teacher"], typed["task"], typed["generate"], typed["paths"]
    if teacher.engine.backend == "vllm":
        check_model_reference(
            teacher.path, "teacher", "set teacher.path, or run `sky-distill bootstrap` for the tiny teacher"
        )
    stage_dir = Path(paths.run_dir) / "generate"
    stage_dir.mkdir(parents=True, exist_ok=True)
    problems, load_errors = load_problems(task, config.split)
    for error in load_errors:
        log.warning("skipped problem record: %s", error)
    shard = select_shard(problems, config.shard_index, config.shard_count)
    write_jsonl(stage_dir / "problems" / f"{shard_name(config.shard_index, config.shard_count)}.jsonl", shard)
    engine = LazyEngine(teacher, config.sampling.seed)
    try:
        summary = generate_shard(shard, teacher, config, stage_dir / "shards", engine)
    finally:
        engine.close()
    summary["problem_load_errors"] = [str(error) for error in load_errors]
    write_json_atomic(shard_summary_path(stage_dir / "shards", summary["shard"]), summary)
    if summary["complete"] and config.shard_count == 1:
        merged = merge_shards(stage_dir, config.shard_count, provenance("generate", to_container(cfg)))
        summary["merged"] = merged
    return summary


def load_problems(task: TaskConfig, split: str) -> tuple[list[Problem], list[RecordError]]:
    from sky_distill.tasks.loader import load_task_problems

    return load_task_problems(task, split)
