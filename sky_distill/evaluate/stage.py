"""`sky-distill eval`: sample each model on each benchmark, score with the verifier, summarise.

Models are named in `eval.models`: `teacher`, `student` (the base student), the name of a
student trained in this run (`<run_dir>/train/<name>/final`), or a path / Hub id. Benchmarks are
the task's held-out split (named after the task) or definitions in `eval/benchmarks/`.
Outputs per (model, benchmark) in `<run_dir>/eval/<model>/<benchmark>/`: the raw samples
(`shards/`, resumable), `samples.jsonl` (scored), `summary.json` and `COMPLETE.json`.
With `eval.responses.path` an external responses file is scored instead; nothing is generated.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sky_distill.benchmarks.loading import LoadedBenchmark, held_out_task, resolve_benchmark
from sky_distill.benchmarks.registry import BenchmarkSpec, load_registry, unknown_benchmark
from sky_distill.config import (
    BenchmarkOptions,
    EvalConfig,
    ModelConfig,
    TaskConfig,
    stage_config,
    to_container,
)
from sky_distill.errors import SkyDistillError
from sky_distill.evaluate.benchmark_run import code_sandbox, evaluate_model
from sky_distill.evaluate.external import score_external
from sky_distill.evaluate.harness_layout import write_harness_layout
from sky_distill.models.hub_check import check_hub_model
from sky_distill.models.reference import check_model_reference, is_hub_id

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


def check_names(config: EvalConfig, registry: dict[str, BenchmarkSpec], task: TaskConfig) -> None:
    """Unknown benchmark names (in eval.benchmarks or eval.options) fail before anything runs."""
    known = [*registry, task.name]
    for name in config.benchmarks:
        if name not in known:
            raise unknown_benchmark(name, known)
        if name == task.name:
            held_out_task(task)  # a task without a held-out split is refused before anything runs
    for name in config.options:  # the default config carries options for the demo's task
        if name not in known:
            log.warning("eval.options.%s names no benchmark here (%s)", name, unknown_benchmark(name, known))


def run(cfg: Any) -> dict[str, Any]:
    typed = stage_config(cfg, "eval")
    config, paths, task = typed["eval"], typed["paths"], typed["task"]
    run_dir = Path(paths.run_dir)
    registry = load_registry(config.registry_dir)
    check_names(config, registry, task)
    plain = to_container(cfg)
    code = typed["verify"].sandbox  # the verifier's sandbox settings
    if any(registry[name].answer_type == "code" for name in config.benchmarks if name in registry):
        code_sandbox("code", code)  # fail closed before any model is loaded
    cache: dict[str, LoadedBenchmark] = {}

    def load(name: str) -> LoadedBenchmark:
        if name not in cache:
            cache[name] = resolve_benchmark(
                name, registry, task, paths.benchmarks_dir, config.options.get(name, BenchmarkOptions())
            )
            for error in cache[name].errors:
                log.warning("benchmark record skipped: %s", error)
        return cache[name]

    if config.responses.path:
        results = score_external(config, load, run_dir / "eval", plain, code)
    else:
        models = models_to_evaluate(config, typed["teacher"], typed["student"], run_dir)
        results = {
            model.name: evaluate_model(model, config, registry, load, run_dir / "eval", plain, code) for model in models
        }
    harness_dir = run_dir / "eval_harness"
    files = write_harness_layout(run_dir / "eval", harness_dir, models=results)  # this run's models only
    log.info("lm-evaluation-harness / lighteval layout: %d files in %s", len(files), harness_dir)
    return headline(results)


def models_to_evaluate(
    config: EvalConfig, teacher: ModelConfig, student: ModelConfig, run_dir: Path
) -> list[ModelConfig]:
    """The models `eval.models` names, each checked to be loadable before any of them runs."""
    models = [resolve_model(name, teacher, student, run_dir) for name in config.models]
    if not models:
        raise SkyDistillError("eval.models is empty; name models to evaluate, or set eval.responses.path")
    for model in models:
        if model.engine.backend == "vllm":
            check_model_reference(model.path, f"eval model {model.name!r}")
            check_hub_model(model.path, "eval model", "eval.models=[/path/to/model]", model.revision)
    return models


def headline(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """What the CLI prints: per model and benchmark, avg@n with its error and what sits next to it."""
    keys = ("avg@n", "avg@n_stderr", "truncation_rate", "unparsed_rate", "mean_tokens")
    return {
        model: {
            name: {
                "n": summary.get("n"),
                "problems": summary.get("problems"),
                **({"missing_problems": summary["missing_problems"]} if summary.get("missing_problems") else {}),
                **{key: summary.get(f"eval/{name}/{key}") for key in keys},
            }
            for name, summary in benchmarks.items()
        }
        for model, benchmarks in results.items()
    }
