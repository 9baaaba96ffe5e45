"""Every config composes and validates; bad config fails with a message naming the key."""

from pathlib import Path

import pytest

from sky_distill.config import STAGE_GROUPS, ConfigError, stage_config
from tests.conftest import REPO, compose_config

EXPERIMENTS = sorted(path.stem for path in (REPO / "conf" / "experiment").glob("*.yaml"))
GROUP_OPTIONS = {
    group: sorted(path.stem for path in (REPO / "conf" / group).glob("*.yaml"))
    for group in ("teacher", "student", "task", "train", "deepspeed", "generate", "verify", "eval", "logger")
}


@pytest.mark.parametrize("experiment", [None, *EXPERIMENTS])
def test_every_experiment_composes_and_validates_for_every_stage(experiment):
    overrides = [f"experiment={experiment}"] if experiment else []
    for stage in STAGE_GROUPS:
        stage_config(compose_config(overrides, stage=stage), stage)


@pytest.mark.parametrize(("group", "option"), [(g, o) for g, options in GROUP_OPTIONS.items() for o in options])
def test_every_group_option_validates(group, option):
    stage_config(compose_config([f"{group}={option}"], stage="pipeline"), "pipeline")


def test_every_yaml_starts_with_a_purpose_line():
    for path in (REPO / "conf").rglob("*.yaml"):
        first = path.read_text().splitlines()[0]
        assert first.startswith("#"), f"{path} should start with a comment saying what it is for"


def test_invalid_values_are_all_reported_with_their_keys():
    cfg = compose_config(
        ["generate.sampling.temperature=-1", "train.learning_rate=abc", "verify.workers=0"], stage="pipeline"
    )
    with pytest.raises(ConfigError) as raised:
        stage_config(cfg, "pipeline")
    message = str(raised.value)
    assert "generate.sampling.temperature: Input should be greater than or equal to 0" in message
    assert "train.learning_rate" in message
    assert "verify.workers" in message
    with pytest.raises(ConfigError, match="shard_index 3 must be below shard_count 1"):
        stage_config(compose_config(["generate.shard_index=3"], stage="generate"), "generate")


def test_unknown_keys_are_rejected():
    cfg = compose_config(["+train.learning_rat=1e-4"], stage="train")
    with pytest.raises(ConfigError, match="train.learning_rat: Extra inputs are not permitted"):
        stage_config(cfg, "train")


def test_paths_are_absolute():
    typed = stage_config(compose_config(["paths.root=relative/dir"], stage="verify"), "verify")
    assert Path(typed["paths"].run_dir).is_absolute()
    assert typed["paths"].run_dir.endswith("relative/dir/runs/demo")


def test_deepspeed_batch_keys_come_from_train():
    from sky_distill.train.batching import BatchPlan
    from sky_distill.train.job import render_deepspeed_config

    cfg = compose_config(["experiment=sky_t1_32b"], stage="train")
    train = stage_config(cfg, "train")["train"]
    plan = BatchPlan(train.global_batch_size, train.micro_batch_size, world_size=8)
    rendered = render_deepspeed_config(train, dict(cfg.deepspeed.zero_optimization), plan, "bf16")
    assert rendered["train_batch_size"] == 96
    assert rendered["gradient_accumulation_steps"] == 12
    assert rendered["zero_optimization"]["stage"] == 3
    assert rendered["bf16"] == {"enabled": True}


def test_the_pipeline_and_deepspeed_groups_are_validated_naming_the_key():
    cfg = compose_config(
        ["pipeline.stages=[generate,verfy]", "pipeline.parallel=0", "deepspeed.zero_optimization.stage=4"],
        stage="pipeline",
    )
    with pytest.raises(ConfigError) as raised:
        stage_config(cfg, "pipeline")
    message = str(raised.value)
    assert "pipeline.stages.1: Input should be 'bootstrap', 'generate'" in message
    assert "pipeline.parallel: Input should be greater than or equal to 1" in message
    assert "deepspeed.zero_optimization.stage: Input should be 0, 1, 2 or 3" in message
    with pytest.raises(ConfigError, match="deepspeed.zero_optimization: offload_param needs stage 3"):
        stage_config(
            compose_config(["deepspeed=zero2", "+deepspeed.zero_optimization.offload_param.device=cpu"], stage="train"),
            "train",
        )
    with pytest.raises(ConfigError, match="deepspeed.zero_optimisation: Extra inputs are not permitted"):
        stage_config(compose_config(["+deepspeed.zero_optimisation.stage=2"], stage="train"), "train")
    typed = stage_config(compose_config(["deepspeed=zero3_offload"], stage="train"), "train")
    assert typed["deepspeed"].zero_optimization.offload_optimizer.device == "cpu"
