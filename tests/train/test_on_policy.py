"""On-policy rounds end to end: the real vLLM engine samples, a teacher scores, DeepSpeed ZeRO-2 on
2 CPU ranks updates; killed in the second round's update, a re-run resumes from its checkpoint
and leaves the first round untouched."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sky_distill.runs import completion, read_json
from sky_distill.tracking import read_metrics
from sky_distill.train.preemption import descendants
from tests.conftest import REPO

pytestmark = pytest.mark.slow

STEPS = 6


def train_command(student: Path, teacher: Path, run_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sky_distill.cli",
        "train",
        "train=tiny",
        "train.loss=on_policy",
        "train.name=opd",
        f"train.init={student}",
        f"student.path={student}",
        f"train.on_policy.teacher_path={teacher}",
        "train.on_policy.rounds=2",
        "train.on_policy.prompts_per_round=8",
        "train.on_policy.samples_per_prompt=2",
        f"train.on_policy.steps_per_round={STEPS}",
        "train.on_policy.max_tokens=24",
        "train.on_policy.reverse_kl_weight=1",
        "train.on_policy.kd_weight=0.5",
        "train.on_policy.top_k=4",
        "train.global_batch_size=4",
        "train.micro_batch_size=2",
        "train.max_seq_len=128",
        "train.log_every=1",
        "train.save_every=1",
        "train.lr_scheduler=constant",
        "task.train_size=16",
        "verify.workers=1",
        f"paths.run_dir={run_dir}",
    ]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    from sky_distill.models.tiny import TinyModelSpec, save_tiny_model

    directory = tmp_path_factory.mktemp("tiny-teacher")
    save_tiny_model(TinyModelSpec(num_layers=2, max_position_embeddings=512), directory, seed=1)
    return directory


def test_two_rounds_end_to_end_and_resume_after_a_kill(tiny_model_dir, teacher_dir, tmp_path):
    run_dir = tmp_path / "run"
    output = run_dir / "train" / "opd"
    command = train_command(tiny_model_dir, teacher_dir, run_dir)
    environ = {**os.environ, "PYTHONPATH": str(REPO), "VLLM_CPU_KVCACHE_SPACE": "1"}
    checkpoint = output / "rounds" / "round-001" / "update" / "checkpoints" / "step-00000001" / "COMPLETE"
    with open(tmp_path / "first.log", "wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.time() + 240
        while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert checkpoint.exists(), (tmp_path / "first.log").read_text()[-3000:]
        for pid in [process.pid, *descendants(process.pid)]:  # the CLI, torchrun and both ranks, mid-update
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()
    first_round = output / "rounds" / "round-000"
    round_zero = read_json(first_round / "COMPLETE.json")
    scores_written = (first_round / "scores.npz").stat().st_mtime_ns
    assert completion(output) is None

    resumed = subprocess.run(command, cwd=REPO, env=environ, capture_output=True, timeout=240)
    assert resumed.returncode == 0, resumed.stdout.decode()[-3000:] + resumed.stderr.decode()[-3000:]

    summary = completion(output)
    assert summary["rounds"] == 2 and summary["steps"] == 2 * STEPS
    assert read_json(first_round / "COMPLETE.json") == round_zero  # round 0 was not redone
    assert (first_round / "scores.npz").stat().st_mtime_ns == scores_written
    second = completion(output / "rounds" / "round-001")
    assert second["provenance"]["sampled_by"] == str(first_round / "update" / "final")
    assert second["provenance"]["updated_from"] == str(first_round / "update" / "final")
    assert second["provenance"]["teacher"] == str(teacher_dir)
    update = completion(output / "rounds" / "round-001" / "update")
    assert update["resumed_from"] >= 1  # from the checkpoint the kill left
    steps = [row["step"] for row in read_metrics(output / "rounds" / "round-001" / "update" / "metrics.jsonl")]
    assert steps == list(range(1, STEPS + 1))  # each step logged exactly once
    rounds = [json.loads(line) for line in (output / "rounds.jsonl").read_text().splitlines()]
    for row in rounds:
        assert row["opd/samples"] == 16
        assert row["opd/reverse_kl_per_token"] > 0  # a random student far from a random teacher
        assert 0.0 <= row["opd/accuracy"] <= 1.0
        assert row["opd/response_tokens_mean"] > 0
    metrics = read_metrics(output / "rounds" / "round-000" / "update" / "metrics.jsonl")
    assert {"train/loss/pg", "train/loss/kd", "train/loss/reverse_kl"} <= set(metrics[0])
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(output / "final")  # the last round's student, exported
