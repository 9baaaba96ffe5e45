"""Training warned of its time limit checkpoints on every rank, requeues itself, and resumes.

train.sbatch passes the warning (USR1, as `--signal=B:USR1@300` delivers it) to its srun
step; every rank saves the current step and exits 85 (sky_distill.train.preemption); the
script requeues the job and the rerun resumes from that checkpoint to the end.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

from tests.conftest import REPO
from tests.slurm.conftest import Submitter, read_jsonl

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
preemption = pytest.importorskip("sky_distill.train.preemption", reason="training has no preemption support yet")

STEPS = 40


def test_training_checkpoints_on_the_warning_requeues_and_resumes(
    slurm_cluster, smoke_models, local_smoke_run, tmp_path
):
    assert preemption.REQUEUE_EXIT_CODE == 85  # the status slurm/common.sh requeues on
    run_dir = tmp_path / "runs" / "smoke"
    shutil.copytree(local_smoke_run / "verify", run_dir / "verify")  # this run's curated traces
    submitter = Submitter(slurm_cluster, tmp_path)
    log = tmp_path / "train.out"
    job = submitter.sbatch(
        "--nodes=2",
        "--ntasks-per-node=1",
        "--gpus-per-node=0",
        "--cpus-per-task=1",
        f"--output={log}",
        str(REPO / "slurm" / "train.sbatch"),
        "experiment=smoke",
        f"paths.root={tmp_path}",
        f"paths.models_dir={smoke_models}",
        "train.name=preempted",
        f"train.max_steps={STEPS}",
        "train.num_threads=1",
    )
    output = run_dir / "train" / "preempted"

    def steps_logged() -> int:
        metrics = output / "metrics.jsonl"
        return len(metrics.read_text().splitlines()) if metrics.exists() else 0

    submitter.wait_until(lambda: steps_logged() >= 2, timeout=600, what="the first training steps", interval=0.2)
    submitter.run("scancel", "--batch", "--signal=USR1", job)  # the time-limit warning
    submitter.wait_until(
        lambda: submitter.job_field(job, "Restarts") == "1",
        timeout=300,
        what="the job to checkpoint and requeue itself",
        interval=0.5,
    )
    stopped_at = json.loads((output / preemption.PREEMPTED_FILE).read_text())["step"]
    assert 2 <= stopped_at < STEPS
    assert (output / "checkpoints").exists() and not (output / "COMPLETE.json").exists()
    submitter.start_requeued(job)
    submitter.wait([job], timeout=900)

    text = log.read_text()
    assert "asking the step to checkpoint" in text and "checkpointed and asked to be resumed" in text
    assert "restart 1" in text
    complete = json.loads((output / "COMPLETE.json").read_text())
    assert complete["steps"] == STEPS and complete["world_size"] == 2
    steps = Counter(row["step"] for row in read_jsonl(output / "metrics.jsonl") if "train/loss" in row)
    assert sorted(steps) == list(range(1, STEPS + 1)) and set(steps.values()) == {1}
