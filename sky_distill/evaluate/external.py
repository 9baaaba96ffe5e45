"""Scoring an external responses file (`eval.responses.path`) against the benchmarks; no engine is started."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sky_distill.benchmarks.loading import LoadedBenchmark
from sky_distill.config import (
    BenchmarkOptions,
    EvalConfig,
    SandboxConfig,
)
from sky_distill.errors import SkyDistillError
from sky_distill.evaluate.benchmark_run import code_sandbox, finish, result_summary
from sky_distill.evaluate.responses import coverage_gaps, describe_gaps, read_responses, token_counter
from sky_distill.evaluate.scoring import score_responses
from sky_distill.runs import (
    fingerprint_files,
    provenance,
)


def score_external(
    config: EvalConfig,
    load: Callable[[str], LoadedBenchmark],
    eval_dir: Path,
    cfg_plain: dict[str, Any],
    code: SandboxConfig | None = None,
) -> dict[str, Any]:
    """Score a responses file against the benchmarks; no engine is started."""
    path = Path(config.responses.path)  # type: ignore[arg-type]
    loaded = {name: load(name) for name in config.benchmarks}
    counter = token_counter(config.responses.tokenizer) if config.responses.tokenizer else None
    by_benchmark = read_responses(path, {n: {p.id for p in b.problems} for n, b in loaded.items()}, counter)
    empty = [name for name in config.benchmarks if not by_benchmark.get(name)]
    if empty:
        raise SkyDistillError(f"{path} has no responses for {', '.join(empty)}; drop them from eval.benchmarks")
    gaps = {name: coverage_gaps(by_benchmark[name], [p.id for p in bench.problems]) for name, bench in loaded.items()}
    partial = [describe_gaps(name, len(loaded[name].problems), *gaps[name]) for name in gaps if any(gaps[name][:2])]
    if partial and not config.responses.allow_missing:
        raise SkyDistillError(
            f"{path} is a partial result: {' | '.join(partial)}. Give every problem the same number of samples, "
            "or set eval.responses.allow_missing=true to score what is there and report the rest as missing"
        )
    model_name = config.responses.name or path.stem
    results = {}
    for name, bench in loaded.items():
        responses = by_benchmark[name]
        missing, short, most = gaps[name]
        problems = {problem.id: problem for problem in bench.problems}
        timeout = config.options.get(name, BenchmarkOptions()).timeout_s or (
            bench.spec.timeout_s if bench.spec and bench.spec.timeout_s else config.timeout_s
        )
        sandbox = code_sandbox(bench.answer_type, code)
        samples = list(score_responses(name, model_name, responses, problems, timeout, config.workers, code))
        tokens_known = all(r.completion_tokens is not None for r in responses)
        summary = {
            "model": model_name,
            "model_path": None,
            "responses_file": str(path),
            "responses_fingerprint": fingerprint_files([path]),
            **result_summary(samples, bench, config, config.sampling.seed, tokens_known),
            "short_problems": len(short),
            "coverage": describe_gaps(name, len(bench.problems), missing, short, most) if missing or short else None,
            "seed": config.sampling.seed,
            "provenance": provenance("eval", cfg_plain, {"responses": fingerprint_files([path])}),
            **({"sandbox": sandbox} if sandbox else {}),
        }
        results[name] = finish(eval_dir / model_name / name, samples, summary)
    return {model_name: results}
