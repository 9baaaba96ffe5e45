"""A generation job cancelled mid-run and requeued loses or repeats no sample.

The job is frozen (`scontrol suspend`) once some traces are on disk and not all, then
requeued (`scontrol requeue`: its processes are killed and it goes back to the queue, as on
preemption); the rerun resumes from the shard file, and the traces are exactly those of an
uninterrupted run. (The time-limit warning's own requeue, by slurm/common.sh, is tested in
test_launching.py and, for training, in test_train_preemption.py.)
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.conftest import REPO
from tests.slurm.conftest import Submitter, read_jsonl, without

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SAMPLES = 32  # per problem (seconds of generation); seeds do not depend on n: indices 0-1 are the reference's


def test_a_requeued_generation_loses_and_duplicates_no_sample(slurm_cluster, smoke_models, local_smoke_run, tmp_path):
    submitter = Submitter(slurm_cluster, tmp_path)
    overrides = [
        "experiment=smoke",
        f"paths.root={tmp_path}",
        f"paths.models_dir={smoke_models}",
        f"generate.sampling.n={SAMPLES}",
    ]
    log = tmp_path / "generate.out"
    job = submitter.sbatch(
        "--gpus-per-node=0", "--cpus-per-task=1", f"--output={log}", str(REPO / "slurm" / "generate.sbatch"), *overrides
    )
    shard = tmp_path / "runs" / "smoke" / "generate" / "shards" / "shard-00000-of-00001.jsonl"
    expected = {(problem, index) for problem in reference_problems(local_smoke_run) for index in range(SAMPLES)}

    def lines() -> int:
        return len(shard.read_text().splitlines()) if shard.exists() else 0

    # the shard file is flushed at the first trace, then every 64 traces or 2 s: wait for a second flush
    submitter.wait_until(lambda: lines() > 1, timeout=600, what="traces on disk")
    submitter.run("scontrol", "suspend", job)
    written = lines()
    assert written < len(expected), "generation finished before it could be interrupted; make it longer"
    submitter.run("scontrol", "requeue", job)  # kills the job's processes and queues it again (held)
    submitter.start_requeued(job)
    submitter.wait([job], timeout=900)

    output = log.read_text()
    assert "DUE TO JOB REQUEUE" in output and "restart 1" in output
    keys = [(trace["problem_id"], trace["sample_index"]) for trace in read_jsonl(shard)]
    duplicates = [key for key, count in Counter(keys).items() if count > 1]
    assert not duplicates, f"duplicated samples: {duplicates[:5]}"
    assert set(keys) == expected
    summary = json.loads(shard.with_name(f"{shard.stem}.summary.json").read_text())
    assert summary["complete"] and summary["done_samples"] == len(expected)

    merged = read_jsonl(tmp_path / "runs" / "smoke" / "generate" / "traces.jsonl")
    assert len(merged) == len(expected)
    reference = {
        (trace["problem_id"], trace["sample_index"]): without(trace, "elapsed_s", "sampling")
        for trace in read_jsonl(local_smoke_run / "generate" / "traces.jsonl")
    }
    resumed = {
        (trace["problem_id"], trace["sample_index"]): without(trace, "elapsed_s", "sampling")
        for trace in merged
        if trace["sample_index"] < 2
    }
    assert resumed == reference  # the interrupted, requeued run wrote what an uninterrupted one did


def reference_problems(run_dir) -> list[str]:
    return [problem["id"] for problem in read_jsonl(run_dir / "generate" / "problems.jsonl")]
