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
