"""kill -9 of a real `sky-distill generate` mid-run, then a re-run: nothing lost, nothing written twice."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sky_distill.records import Trace, read_jsonl, read_jsonl_strict
from tests.conftest import REPO

pytestmark = pytest.mark.slow
SHARD = "shard-00000-of-00001"
PROBLEMS, SAMPLES = 256, 4  # enough samples that the kill lands mid-run on a busy machine too
TOTAL = PROBLEMS * SAMPLES


def generate_command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "sky_distill.cli", "generate", *overrides]


def line_count(path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def wait_until_group_is_gone(group: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError(f"processes of group {group} outlived the kill")


def test_kill_9_of_a_data_parallel_run_then_resume_on_one_engine(tiny_model_dir, tmp_path):
    overrides = [
        f"paths.root={tmp_path}",
        f"teacher.path={tiny_model_dir}",
        f"task.train_size={PROBLEMS}",
        f"generate.sampling.n={SAMPLES}",
        "generate.sampling.max_tokens=64",
        "generate.flush_every=8",
        "generate.flush_seconds=0.5",
    ]
    stage_dir = tmp_path / "runs" / "demo" / "generate"
    shard = stage_dir / "shards" / f"{SHARD}.jsonl"
    with open(tmp_path / "killed.log", "w") as log:
        killed = subprocess.Popen(
            generate_command(*overrides, "teacher.engine.data_parallel_size=2"),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the engine processes die with it
        )
    deadline = time.monotonic() + 400
    while line_count(shard) < 32:
        assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "generation did not start"
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)  # as a preempted SLURM job: every process at once
    killed.wait()
    wait_until_group_is_gone(killed.pid)
    before = shard.read_bytes()
    whole = before[: before.rfind(b"\n") + 1]
    assert 32 <= before.count(b"\n") < TOTAL, "the kill should land mid-run"
    assert not (stage_dir / "COMPLETE.json").exists() and not (stage_dir / "traces.jsonl").exists()
    survivors, errors = read_jsonl(shard, Trace)
    assert len(survivors) == whole.count(b"\n") and all(e.line > whole.count(b"\n") for e in errors)

    resumed = subprocess.run(generate_command(*overrides), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((stage_dir / "shards" / f"{SHARD}.summary.json").read_text())
    assert summary["complete"] and summary["gen/new_samples"] == TOTAL - len(survivors)
    assert summary["gen/torn_bytes_discarded"] == len(before) - len(whole)
    after = shard.read_bytes()
    assert after.startswith(whole)  # append-only: what survived the kill was kept as it was
    stored = [trace.key for trace in read_jsonl_strict(shard, Trace)]
    assert len(stored) == len(set(stored)) == TOTAL
    merged = read_jsonl_strict(stage_dir / "traces.jsonl", Trace)
    assert [trace.key for trace in merged] == sorted(
        (f"arithmetic-train-{i:06d}", s) for i in range(PROBLEMS) for s in range(SAMPLES)
    )
    assert json.loads((stage_dir / "COMPLETE.json").read_text())["gen/samples"] == TOTAL
