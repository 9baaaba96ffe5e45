"""The one resume rule: settings recorded on first use, other settings refused naming the keys."""

import json

import pytest

from sky_distill.benchmarks.registry import load_registry
from sky_distill.config import EvalConfig, ModelConfig
from sky_distill.evaluate.benchmark_run import plan_run, resume_settings
from sky_distill.settings_guard import SettingsChangedError, check_settings, recorded_settings


def test_settings_are_recorded_then_other_ones_refused_by_key(tmp_path):
    path = tmp_path / "x.settings.json"
    first = check_settings(path, {"sampling": {"temperature": 1.0}, "model": "m"}, "shard x")
    assert check_settings(path, {"sampling": {"temperature": 1.0}, "model": "m"}, "shard x") == first
    with pytest.raises(SettingsChangedError, match=r"shard x .*sampling.temperature \(1.0 -> 0.5\)"):
        check_settings(path, {"sampling": {"temperature": 0.5}, "model": "m"}, "shard x")
    bare = tmp_path / "settings.json"  # how an early eval recorded them
    bare.write_text(json.dumps({"model_path": "m"}))
    assert recorded_settings(bare) == {"model_path": "m"} and recorded_settings(tmp_path / "none.json") is None


def test_an_eval_may_add_samples_but_not_change_how_they_are_made(tmp_path):
    spec, model = load_registry()["gsm8k"], ModelConfig(name="m", path="m")
    run = plan_run("gsm8k", model, spec, EvalConfig(benchmarks=["gsm8k"], models=["m"], sampling={"n": 2}))
    more = plan_run("gsm8k", model, spec, EvalConfig(benchmarks=["gsm8k"], models=["m"], sampling={"n": 4}))
    hotter = plan_run(
        "gsm8k", model, spec, EvalConfig(benchmarks=["gsm8k"], models=["m"], sampling={"n": 2, "temperature": 0.9})
    )
    path = tmp_path / "settings.json"
    check_settings(path, resume_settings(run), "eval")
    check_settings(path, resume_settings(more), "eval")
    with pytest.raises(SettingsChangedError, match="sampling.temperature"):
        check_settings(path, resume_settings(hotter), "eval")
