"""The experiment presets say what they claim: the Sky-T1 recipe, its 7B variant, the smoke run."""

from __future__ import annotations

from sky_distill.config import stage_config
from tests.conftest import compose_config


def typed(experiment: str, *overrides: str):
    cfg = compose_config([f"experiment={experiment}", *overrides], stage="pipeline")
    return cfg, stage_config(cfg, "pipeline")


def test_sky_t1_32b_is_the_published_recipe():
    cfg, groups = typed("sky_t1_32b")
    assert groups["teacher"].path == "Qwen/QwQ-32B-Preview"
    assert groups["student"].path == "Qwen/Qwen2.5-32B-Instruct"
    assert groups["train"].init == "Qwen/Qwen2.5-32B-Instruct"
    train = groups["train"]
    assert (train.learning_rate, train.epochs, train.global_batch_size, train.max_seq_len) == (1e-5, 3, 96, 16384)
    assert train.batch_unit == "examples"  # 96 traces a step, as published (not 96 packed rows)
    assert groups["generate"].sampling.logprobs is None  # an SFT recipe stores no teacher distribution
    assert (groups["teacher"].engine.tensor_parallel_size, groups["teacher"].engine.data_parallel_size) == (4, 2)
    assert groups["task"].kind == "mixture" and groups["task"].expected_traces == 17000
    zero = cfg.deepspeed.zero_optimization
    assert zero.stage == 3 and zero.offload_optimizer.device == "cpu"
    assert groups["generate"].sampling.max_tokens == 16384
    assert cfg.run_name == "sky_t1_32b"  # the experiment names its run directory
    assert groups["paths"].run_dir.endswith("/runs/sky_t1_32b")
    assert "bootstrap" not in cfg.pipeline.stages
    assert list(groups["eval"].benchmarks) == ["math500", "aime24", "gpqa_diamond", "livecodebench"]
    assert groups["eval"].sampling.n is None  # each benchmark samples at its own published settings


def test_sky_t1_7b_changes_only_the_student_and_its_zero_stage():
    cfg, groups = typed("sky_t1_7b")
    base_cfg, base = typed("sky_t1_32b")
    assert groups["student"].path == "Qwen/Qwen2.5-7B-Instruct" == groups["train"].init
    assert groups["teacher"] == base["teacher"] and groups["generate"] == base["generate"]
    assert groups["train"].model_copy(update={"init": base["train"].init}) == base["train"]
    assert cfg.deepspeed.zero_optimization.stage == 2
    assert cfg.run_name == "sky_t1_7b"


def test_a_command_line_override_beats_the_experiment():
    cfg, groups = typed("sky_t1_32b", "run_name=mine", "train.learning_rate=2e-5")
    assert cfg.run_name == "mine" and groups["train"].learning_rate == 2e-5


def test_smoke_is_tiny_and_runs_every_stage():
    cfg, groups = typed("smoke")
    assert groups["task"].train_size == 32 and groups["train"].max_steps == 6
    assert groups["teacher"].bootstrap is not None and groups["student"].bootstrap is not None
    assert list(cfg.pipeline.stages) == ["bootstrap", "generate", "verify", "train", "eval", "table"]
    assert cfg.run_name == "smoke"
