"""A `--multirun` sweep submitted to SLURM by hydra-submitit-launcher: two jobs, two run directories.

The sweep runs `sky-distill pipeline` over two verification policies; each job's pipeline
stages must read and write that job's own run directory. (Each job starts from a copy of the
reference run's traces, so that the sweep costs no generation.)
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from sky_distill.sweeps import sweep_dirname
from tests.slurm.conftest import Submitter, read_jsonl, run_cli

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_a_submitit_sweep_runs_each_job_in_its_own_run_directory(
    slurm_cluster, smoke_models, local_smoke_run, tmp_path
):
    runs = tmp_path / "runs" / "smoke"
    job_dirs = {
        policy: runs / sweep_dirname(f"experiment=smoke,pipeline.stages=[verify],verify.policy={policy}")
        for policy in ("all_correct", "all")
    }
    for run_dir in job_dirs.values():
        shutil.copytree(local_smoke_run / "generate", run_dir / "generate")
    submitter = Submitter(slurm_cluster, tmp_path)
    run_cli(
        [
            "sky-distill",
            "pipeline",
            "--multirun",
            "hydra/launcher=slurm",
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.timeout_min=30",
            "experiment=smoke",
            f"paths.root={tmp_path}",
            f"paths.models_dir={smoke_models}",
            "pipeline.stages=[verify]",
            "verify.policy=all_correct,all",
        ],
        cwd=tmp_path,
        env=submitter.env,
        timeout=900,  # the launcher waits for its jobs
    )
    assert sorted(path.name for path in runs.iterdir()) == sorted([*(d.name for d in job_dirs.values()), "multirun"])
    verdicts = read_jsonl(local_smoke_run / "verify" / "verdicts.jsonl")
    kept = {}
    for policy, run_dir in job_dirs.items():
        report = json.loads((run_dir / "verify" / "report.json").read_text())
        assert report["policy"]["policy"] == policy  # the job's own config, in the job's own run dir
        kept[policy] = len(read_jsonl(run_dir / "verify" / "sft" / "verified.jsonl"))
        assert json.loads((run_dir / "pipeline.json").read_text())["timings_s"]["verify"] > 0
    correct = {(v["problem_id"], v["sample_index"]) for v in verdicts if v["correct"]}
    untruncated = [t for t in read_jsonl(local_smoke_run / "generate" / "traces.jsonl") if not t["truncated"]]
    right = [t for t in untruncated if (t["problem_id"], t["sample_index"]) in correct]
    assert kept == {"all_correct": len(right), "all": len(untruncated)}
    assert kept["all"] > kept["all_correct"]

    sweep = next((runs / "multirun").glob("pipeline-*"))
    assert (sweep / "multirun.yaml").exists()
    tasks = sorted(path for path in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", path.name))
    assert [path.name.split("_")[1] for path in tasks] == ["0", "1"]  # one SLURM array job, a task per config
    assert all(list(path.glob("*_result.pkl")) for path in tasks)
