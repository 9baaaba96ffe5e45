"""`sky-distill eval`: sample each model on each benchmark, score with the verifier, summarise.

Models are named in `eval.models`: `teacher`, `student` (the base student), the name of a
student trained in this run (`<run_dir>/train/<name>/final`), or a path / Hub id. Outputs per
(model, benchmark) in `<run_dir>/eval/<model>/<benchmark>/`: the raw samples (resumable),
`samples.jsonl` (scored), `summary.json` and COMPLETE.json.
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path
from typing import Any

from sky_distill.config import (
    EvalConfig,
    GenerateConfig,
    ModelConfig,
    TaskConfig,
    stage_config,
    to_container,
)
from sky_distill.errors import SkyDistillError
from sky_distill.evaluate.metrics import avg_at_n, maj_at_k, pass_at_k
from sky_distill.generate.stage import LazyEngine, generate_shard
from sky_distill.models.reference import check_model_reference, is_hub_id
from sky_distill.records import EvalSample, Problem, RecordError, Trace, read_jsonl, write_jsonl
from sky_distill.runs import completion, fingerprint_object, mark_complete, provenance, write_json_atomic
from sky_distill.verify.checks import VERIFIER_VERSION
from sky_distill.verify.stage import verify_responses

log = logging.getLogger(__name__)


class UnknownModelError(SkyDistillError, ValueError):
    """An eval model name that is neither a role, a trained student, a path nor a Hub id."""


def resolve_model(name: str, teacher: ModelConfig, student: ModelConfig, run_dir: Path) -> ModelConfig:
    """A ModelConfig for an eval model name; trained students reuse the student's engine options."""
    if name == "teacher":
        return teacher
    if name == "student":
        return student
    trained = run_dir / "train" / name / "final"
    if trained.exists():
        return student.model_copy(update={"name": name, "path": str(trained), "bootstrap": None})
    if Path(name).is_dir() or is_hub_id(name):
        return student.model_copy(update={"name": Path(name).name, "path": name, "bootstrap": None})
    raise UnknownModelError(
        f"eval model {name!r} is not 'teacher', 'student', a trained student in {run_dir / 'train'}, a path or a Hub id"
    )


def load_benchmark(name: str, task: TaskConfig) -> tuple[list[Problem], list[RecordError]]:
    """The problems of a benchmark; the task's own held-out split is the benchmark named after it."""
    from sky_distill.tasks.loader import load_task_problems

    if name == task.name:
        return load_task_problems(task, "test")
    raise SkyDistillError(f"unknown benchmark {name!r}; available here: {task.name!r}")


def score_samples(
    benchmark: str, model_name: str, traces: list[Trace], problems: dict[str, Problem], timeout_s: float, workers: int
) -> list[EvalSample]:
    verdicts = verify_responses(
        [(t.problem_id, t.sample_index, t.response) for t in traces], problems, timeout_s, workers
    )
    return [
        EvalSample(
            benchmark=benchmark,
            problem_id=trace.problem_id,
            sample_index=trace.sample_index,
            model=model_name,
            response=trace.response,
            extracted=verdict.extracted,
            correct=verdict.correct,
            status=verdict.status,
            completion_tokens=trace.completion_tokens,
            finish_reason=trace.finish_reason,
            truncated=trace.truncated,
        )
        for trace, verdict in zip(traces, verdicts)
    ]


def summarize(samples: list[EvalSample], benchmark: str, ks: tuple[int, ...] = (1, 4, 8, 16, 32, 64)) -> dict[str, Any]:
    """avg@n, pass@k and maj@k with standard errors, plus length, truncation and unparsed rates."""
    by_problem: dict[str, list[EvalSample]] = {}
    for sample in sorted(samples, key=lambda s: (s.problem_id, s.sample_index)):
        by_problem.setdefault(sample.problem_id, []).append(sample)
    correct = [[s.correct for s in group] for group in by_problem.values()]
    answers = [[s.extracted for s in group] for group in by_problem.values()]
    n = min((len(group) for group in correct), default=0)
    mean, stderr = avg_at_n(correct)
    prefix = f"eval/{benchmark}"
    summary: dict[str, Any] = {
        f"{prefix}/avg@n": mean,
        f"{prefix}/avg@n_stderr": stderr,
        "n": n,
        "problems": len(by_problem),
        "samples": len(samples),
    }
    for k in ks:
        if k <= n and k > 1:
            summary[f"{prefix}/pass@{k}"], summary[f"{prefix}/pass@{k}_stderr"] = pass_at_k(correct, k)
            summary[f"{prefix}/maj@{k}"], summary[f"{prefix}/maj@{k}_stderr"] = maj_at_k(answers, correct, k)
    tokens = [s.completion_tokens for s in samples]
    summary.update(
        {
            f"{prefix}/truncation_rate": sum(s.truncated for s in samples) / len(samples) if samples else 0.0,
            f"{prefix}/unparsed_rate": sum(s.status == "unparsed" for s in samples) / len(samples) if samples else 0.0,
            f"{prefix}/mean_tokens": statistics.fmean(tokens) if tokens else 0.0,
            f"{prefix}/median_tokens": statistics.median(tokens) if tokens else 0.0,
        }
    )
    return summary


def evaluate_model(
    model: ModelConfig,
    benchmarks: list[str],
    config: EvalConfig,
    task: TaskConfig,
    eval_dir: Path,
    workers: int,
    cfg_plain: dict,
) -> dict[str, Any]:
    engine = LazyEngine(model, config.sampling.seed)
    results = {}
    try:
        for benchmark in benchmarks:
            out = eval_dir / model.name / benchmark
            done = completion(out)
            if done is not None:
                results[benchmark] = done
                continue
            problems, errors = load_benchmark(benchmark, task)
            for error in errors:
                log.warning("benchmark record skipped: %s", error)
            generate_config = GenerateConfig(sampling=config.sampling)
            shard = generate_shard(problems, model, generate_config, out / "shards", engine)
            if not shard["complete"]:
                raise RuntimeError(
                    f"{model.name} on {benchmark}: {shard['done_samples']} of {shard['expected_samples']} samples; re-run to resume"
                )
            traces, _ = read_jsonl(out / "shards" / f"{shard['shard']}.jsonl", Trace)
            samples = score_samples(benchmark, model.name, traces, {p.id: p for p in problems}, 10.0, workers)
            write_jsonl(out / "samples.jsonl", samples)
            summary = {
                "model": model.name,
                "model_path": model.path,
                "benchmark": benchmark,
                **summarize(samples, benchmark),
                "sampling": config.sampling.model_dump(),
                "verifier_version": VERIFIER_VERSION,
                "data_fingerprint": fingerprint_object(sorted(p.id for p in problems)),
                "problem_errors": [str(error) for error in errors],
                "provenance": provenance("eval", cfg_plain),
            }
            write_json_atomic(out / "summary.json", summary)
            mark_complete(out, summary)
            results[benchmark] = summary
    finally:
        engine.close()
    return results


def run(cfg: Any) -> dict[str, Any]:
    typed = stage_config(cfg, "eval")
    config, paths = typed["eval"], typed["paths"]
    run_dir = Path(paths.run_dir)
    models = [resolve_model(name, typed["teacher"], typed["student"], run_dir) for name in config.models]
    for model in models:
        if model.engine.backend == "vllm":
            check_model_reference(model.path, f"eval model {model.name!r}")
    plain = to_container(cfg)
    workers = int(plain.get("verify", {}).get("workers", 2))
    return {
        model.name: evaluate_model(model, config.benchmarks, config, typed["task"], run_dir / "eval", workers, plain)
        for model in models
    }
