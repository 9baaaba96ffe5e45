"""The CLI's user errors are one line that says what to fix."""

import subprocess
import sys


def sky_distill(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sky_distill.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_help_lists_every_stage():
    result = sky_distill("--help")
    assert result.returncode == 0
    for stage in ("generate", "verify", "train", "eval", "pipeline", "table"):
        assert stage in result.stdout


def test_unknown_stage():
    result = sky_distill("distil")
    assert result.returncode == 2
    assert "unknown stage 'distil'" in error_line(result)


def test_malformed_override():
    result = sky_distill("verify", "verify.timeout_s=soon")
    assert result.returncode == 1
    assert "verify.timeout_s" in error_line(result)


def test_unknown_config_option():
    result = sky_distill("generate", "teacher=gpt9")
    assert result.returncode == 1
    line = error_line(result)
    assert "teacher" in line and "gpt9" in line


def test_missing_inputs_name_the_stage_to_run(tmp_path):
    result = sky_distill("verify", f"paths.root={tmp_path}")
    assert result.returncode == 1
    assert "run `sky-distill generate`" in error_line(result)


def test_missing_model_path(tmp_path):
    (tmp_path / "runs/demo/verify").mkdir(parents=True)
    (tmp_path / "runs/demo/verify/COMPLETE.json").write_text("{}")
    result = sky_distill("train", f"paths.root={tmp_path}", f"train.init={tmp_path}/nowhere")
    assert result.returncode == 1
    assert "nowhere" in error_line(result)


def test_hydra_flags_work_in_any_position_and_cfg_job_validates():
    """Seen: `pipeline experiment=sky_t1_32b --cfg job` failed with `unrecognized arguments: stage=pipeline`,
    and `--cfg job` printed `epochs: abc` without checking it."""
    from sky_distill.cli import split_args

    assert split_args(["a=1", "--cfg", "job", "b=2", "-m", "--info", "defaults", "c=3"]) == (
        ["a=1", "b=2", "c=3"],
        ["--cfg", "job", "-m", "--info", "defaults"],
    )
    printed = sky_distill("pipeline", "experiment=sky_t1_32b", "--cfg", "job", "--package", "train")
    assert printed.returncode == 0, printed.stderr
    assert "# @package train" in printed.stdout and "num_procs:" in printed.stdout
    bad = sky_distill("train", "--cfg", "job", "train.epochs=abc", "train.max_steps=-3")
    assert bad.returncode == 1 and "epochs: abc" not in bad.stdout
    lines = bad.stderr.strip().splitlines()
    assert lines[0] == "sky-distill train: error: 2 config problems:"
    assert lines[1].strip().startswith("train.epochs:") and lines[2].strip().startswith("train.max_steps:")


def test_stage_help_lists_its_keys_with_defaults_and_conf_comments():
    """Seen: `train --help` was 325 lines of Hydra's generic help describing no key."""
    result = sky_distill("train", "--help", "train.learning_rate=0.01")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("usage: sky-distill train") and len(lines) < 120
    rate = next(line for line in lines if line.strip().startswith("train.learning_rate ="))
    assert rate.split("=")[1].split()[0] == "0.01"  # the overrides are applied
    scheduler = next(line for line in lines if line.strip().startswith("train.lr_scheduler ="))
    assert scheduler.endswith("# cosine | linear | constant (all after linear warmup)")  # from conf/train/default.yaml
    assert any(line.startswith("logger (conf/logger/none.yaml)") for line in lines)


def test_wandb_respects_wandb_mode_and_fails_before_training_without_a_key(tmp_path, monkeypatch):
    """Seen: logger=wandb passed mode=online over WANDB_MODE=offline and failed inside training."""
    from sky_distill.config import LoggerConfig
    from sky_distill.tracking import check_tracker, wandb_mode

    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode(LoggerConfig(backend="wandb")) == "offline"
    assert wandb_mode(LoggerConfig(backend="wandb", mode="online")) == "online"  # an explicit key wins
    check_tracker(LoggerConfig(backend="wandb"))  # offline needs no key
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    import pytest

    from sky_distill.errors import SkyDistillError

    with pytest.raises(SkyDistillError, match="needs an API key"):
        check_tracker(LoggerConfig(backend="wandb"))
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password k\n")
    check_tracker(LoggerConfig(backend="wandb"))
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY")}
    env["NETRC"] = str(tmp_path / "none")
    result = subprocess.run(
        [sys.executable, "-m", "sky_distill.cli", "train", "logger=wandb", f"paths.root={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 1 and "needs an API key" in error_line(result)


def test_a_hub_model_that_cannot_be_loaded_fails_at_once_in_one_line(tmp_path, monkeypatch):
    """Seen: `eval.models=[nosuch-org/nosuch-model]` retried for 36 s and ended in a 118-line traceback."""
    import os
    import time

    import pytest

    from sky_distill.errors import MissingInputError
    from sky_distill.models.hub_check import check_hub_model

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sky_distill.cli",
            "eval",
            "eval.models=[nosuch-org/nosuch-model]",
            f"paths.root={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 1 and time.monotonic() - started < 30
    line = error_line(result)
    assert "'nosuch-org/nosuch-model' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set" in line
    assert line.endswith("point at a local copy: eval.models=[/path/to/model]")
    monkeypatch.setenv("HF_HUB_OFFLINE", "")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    started = time.monotonic()
    with pytest.raises(MissingInputError) as raised:  # online: one request, no retries
        check_hub_model("nosuch-org/nosuch-model", "eval model", "eval.models=[/path/to/model]", timeout_s=5)
    assert time.monotonic() - started < 15
    # here the Hub is unreachable; with network the Hub says the model does not exist
    assert "the Hub cannot be reached" in str(raised.value) or "is not a model on the Hugging Face Hub" in str(
        raised.value
    )
    check_hub_model(str(tmp_path), "eval model", "eval.models=[/path/to/model]")  # a local directory is fine
