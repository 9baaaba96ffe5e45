"""One model on one benchmark: plan what decides the result, generate (resumably, through the
shard writer), score with the verifier, summarise and mark complete; and a model's benchmarks in turn."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sky_distill.benchmarks.loading import LoadedBenchmark
from sky_distill.benchmarks.registry import BenchmarkSpec
from sky_distill.benchmarks.rows import data_fingerprint
from sky_distill.config import (
    BenchmarkOptions,
    EvalConfig,
    GenerateConfig,
    ModelConfig,
    SamplingConfig,
    SandboxConfig,
    ThinkingBudgetConfig,
)
from sky_distill.errors import SkyDistillError
from sky_distill.evaluate.scoring import Response, score_responses, summarize
from sky_distill.generate.budget import read_thinking, thinking_path
from sky_distill.generate.sampling import LazyEngine, generate_shard
from sky_distill.generate.shards import shard_name
from sky_distill.records import EvalSample, Trace, read_jsonl, write_jsonl
from sky_distill.runs import (
    completion,
    fingerprint_object,
    mark_complete,
    provenance,
    write_json_atomic,
)
from sky_distill.settings_guard import check_settings, refuse_changes
from sky_distill.verify.checks import VERIFIER_VERSION
from sky_distill.verify.sandbox import require_containment

log = logging.getLogger(__name__)


def model_fingerprint(model: ModelConfig) -> str | None:
    """A hash of a local model's config and weight file sizes (cheap); None for Hub ids."""
    directory = Path(model.path)
    if not directory.is_dir():
        return None
    config = directory / "config.json"
    weights = sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin"))
    return fingerprint_object(
        {
            "config": config.read_text() if config.exists() else None,
            "weights": [(p.name, p.stat().st_size) for p in weights],
        }
    )


def resolve_sampling(spec: BenchmarkSpec | None, options: BenchmarkOptions, config: EvalConfig) -> SamplingConfig:
    """Benchmark defaults, then `eval.options.<b>.sampling`, then non-null `eval.sampling` keys."""
    values = SamplingConfig().model_dump()
    if spec is not None:
        values.update(spec.sampling.model_dump())
    values.update(options.sampling)
    values.update({key: value for key, value in config.sampling.model_dump().items() if value is not None})
    try:
        return SamplingConfig.model_validate(values)
    except ValueError as error:
        name = spec.name if spec else "the task benchmark"
        raise SkyDistillError(f"sampling for {name}: {' '.join(str(error).split())}") from error


@dataclass(frozen=True)
class BenchmarkRun:
    """Everything that decides one (model, benchmark) result, recorded and checked on resume."""

    benchmark: str
    model: ModelConfig  # with the prompt the benchmark asks for
    sampling: SamplingConfig
    budget: dict[str, Any] | None
    options: BenchmarkOptions
    timeout_s: float

    def settings(self) -> dict[str, Any]:
        return {
            "model_path": self.model.path,
            "model_revision": self.model.revision,
            "prompt_template": self.model.prompt_template,
            "system_prompt": self.model.system_prompt,
            "sampling": self.sampling.model_dump(),
            "budget": self.budget,
            "options": self.options.model_dump(exclude={"sampling"}),
        }


def plan_run(name: str, model: ModelConfig, spec: BenchmarkSpec | None, config: EvalConfig) -> BenchmarkRun:
    options = config.options.get(name, BenchmarkOptions())
    system_prompt = config.system_prompt if config.system_prompt is not None else model.system_prompt
    # A registry benchmark's problems carry the full prompt; the task's keep the model's template.
    template = "{problem}" if spec is not None else model.prompt_template
    prompted = model.model_copy(update={"prompt_template": template, "system_prompt": system_prompt})
    budget = config.budget.model_dump() if config.budget.thinking_tokens is not None else None
    timeout = options.timeout_s or (spec.timeout_s if spec and spec.timeout_s else config.timeout_s)
    return BenchmarkRun(name, prompted, resolve_sampling(spec, options, config), budget, options, timeout)


def resume_settings(run: BenchmarkRun) -> dict[str, Any]:
    """What the samples of `out` depend on: the run's settings but `n` (more samples may be added)."""
    settings = run.settings()
    return {**settings, "sampling": {k: v for k, v in settings["sampling"].items() if k != "n"}}


def generate_samples(run: BenchmarkRun, loaded: LoadedBenchmark, out: Path, engine: LazyEngine) -> list[Response]:
    """Generate (or resume) the samples of one benchmark; the responses to score."""
    shard_dir = out / "shards"
    budget = ThinkingBudgetConfig.model_validate(run.budget) if run.budget is not None else None
    config = GenerateConfig(sampling=run.sampling)
    shard = generate_shard(loaded.problems, run.model, config, shard_dir, engine, budget=budget)
    if not shard["complete"]:
        raise SkyDistillError(
            f"{run.model.name} on {run.benchmark}: {shard['done_samples']} of {shard['expected_samples']} samples; "
            "re-run to resume"
        )
    ids = {problem.id for problem in loaded.problems}
    path = shard_dir / f"{shard_name(0, 1)}.jsonl"  # absent when no problem's prompt fits the model
    traces, errors = read_jsonl(path, Trace) if path.exists() else ([], [])
    for error in errors:
        log.warning("unreadable sample: %s", error)
    thinking = read_thinking(thinking_path(shard_dir, shard_name(0, 1)))
    return [
        Response.from_trace(trace, thinking.get(trace.key, {}).get("thinking_tokens"))
        for trace in sorted(traces, key=lambda t: (t.problem_id, t.sample_index))
        if trace.problem_id in ids and trace.sample_index < run.sampling.n
    ]


def result_summary(
    samples: list[EvalSample],
    loaded: LoadedBenchmark,
    config: EvalConfig,
    seed: int,
    tokens_known: bool = True,
) -> dict[str, Any]:
    spec = loaded.spec
    groups = None
    if spec is not None and spec.group_by:
        groups = {p.id: str(p.metadata.get(spec.group_by, "?")) for p in loaded.problems}
    summary = summarize(
        samples,
        loaded.name,
        config.ks,
        config.bootstrap_resamples,
        config.confidence,
        seed,
        groups,
        tokens_known,
    )
    answered = {s.problem_id for s in samples}
    without = sorted({p.id for p in loaded.problems} - answered)
    if without:  # e.g. prompts too long for the model: the score covers fewer problems, and says so
        log.warning(
            "%s: %d of %d problems have no samples (e.g. %s)",
            loaded.name,
            len(without),
            len(loaded.problems),
            without[:3],
        )
    summary.update(
        {
            "benchmark": loaded.name,
            "benchmark_title": spec.title if spec else loaded.name,
            "answer_type": loaded.answer_type,
            "problems_expected": len(loaded.problems),
            "missing_problems": len(without),
            "problems_without_samples": without[:50],
            "verifier_version": VERIFIER_VERSION,
            "data_source": loaded.source,
            "data_fingerprint": data_fingerprint(loaded.problems),
            "prompt_fingerprint": fingerprint_object(sorted((p.id, p.problem) for p in loaded.problems)),
            "problem_errors": [str(error) for error in loaded.errors],
        }
    )
    return summary


def finish(out: Path, samples: list[EvalSample], summary: dict[str, Any]) -> dict[str, Any]:
    write_jsonl(out / "samples.jsonl", samples)
    write_json_atomic(out / "summary.json", summary)
    mark_complete(out, summary)
    log.info(
        "%s on %s: avg@%s %.4f ± %.4f over %s",
        summary["model"],
        summary["benchmark"],
        summary.get("n") or "n",
        summary[f"eval/{summary['benchmark']}/avg@n"],
        summary[f"eval/{summary['benchmark']}/avg@n_stderr"],
        problems_phrase(summary),
    )
    return summary


def problems_phrase(summary: dict[str, Any]) -> str:
    """`30 problems`, or `1 of 30 problems (29 missing)` for a partial result."""
    missing = summary.get("missing_problems") or 0
    if not missing:
        return f"{summary['problems']} problems"
    return f"{summary['problems']} of {summary['problems_expected']} problems ({missing} missing)"


def code_sandbox(answer_type: str, code: SandboxConfig | None) -> dict[str, Any] | None:
    """For code: refuse (fail closed) before anything is generated or run; else the sandbox layers to record."""
    if answer_type != "code":
        return None
    code = code or SandboxConfig()
    return require_containment(code.backend, code.site_packages)


def evaluate_benchmark(
    run: BenchmarkRun,
    loaded: LoadedBenchmark,
    out: Path,
    engine: LazyEngine,
    config: EvalConfig,
    workers: int,
    cfg_plain: dict[str, Any],
    code: SandboxConfig | None = None,
) -> dict[str, Any]:
    """Generate (resumably), score and summarise one model on one benchmark."""
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out / "settings.json", resume_settings(run), f"{out}")
    sandbox = code_sandbox(loaded.answer_type, code)
    responses = generate_samples(run, loaded, out, engine)
    problems = {problem.id: problem for problem in loaded.problems}
    samples = list(score_responses(run.benchmark, run.model.name, responses, problems, run.timeout_s, workers, code))
    summary = {
        "model": run.model.name,
        "model_path": str(Path(run.model.path).resolve()) if Path(run.model.path).exists() else run.model.path,
        "model_revision": run.model.revision,
        "model_fingerprint": model_fingerprint(run.model),
        **result_summary(samples, loaded, config, run.sampling.seed),
        "sampling": run.sampling.model_dump(),
        "budget": run.budget,
        "seed": run.sampling.seed,
        "settings": run.settings(),
        "provenance": provenance("eval", cfg_plain),
        **({"sandbox": sandbox} if sandbox else {}),
    }
    return finish(out, samples, summary)


def evaluate_model(
    model: ModelConfig,
    config: EvalConfig,
    registry: dict[str, BenchmarkSpec],
    load: Callable[[str], LoadedBenchmark],  # cached across models
    eval_dir: Path,
    cfg_plain: dict[str, Any],
    code: SandboxConfig | None = None,
) -> dict[str, Any]:
    engine = LazyEngine(model, config.sampling.seed)
    results = {}
    try:
        for name in config.benchmarks:
            out = eval_dir / model.name / name
            run = plan_run(name, model, registry.get(name), config)
            done = completion(out)
            if done is not None and not config.rescore:
                refuse_changes(f"{out} (complete)", done.get("settings"), run.settings())
                log.info("%s on %s is complete, skipping", model.name, name)
                results[name] = done
                continue
            results[name] = evaluate_benchmark(run, load(name), out, engine, config, config.workers, cfg_plain, code)
    finally:
        engine.close()
    return results
