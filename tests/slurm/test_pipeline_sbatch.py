"""The smoke pipeline through slurm/pipeline.py and the sbatch scripts gives the local path's outputs.

Generation runs as a 2-task array (two shards, merged by its own job), training as 2 tasks on
2 nodes (one rank per node, rendezvous from the SLURM environment), then eval and the table,
all chained with afterok dependencies around one run directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO
from tests.slurm.conftest import SMOKE, Submitter, read_jsonl, run_cli, without

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def sbatch_run(slurm_cluster, smoke_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("sbatch")
    submitter = Submitter(slurm_cluster, root)
    overrides = [*SMOKE, f"paths.root={root}", f"paths.models_dir={smoke_models}", "generate.shard_count=2"]
    resources = ["--sbatch=--gpus-per-node=0", "--sbatch=--cpus-per-task=1"]
    resources += ["--sbatch-train=--nodes=2", "--sbatch-train=--ntasks-per-node=1"]
    run_cli(
        [sys.executable, str(REPO / "slurm" / "pipeline.py"), *resources, *overrides],
        cwd=root,
        env=submitter.env,
    )
    run_dir = root / "runs" / "smoke"
    record = json.loads(next((run_dir / "logs" / "slurm").glob("jobs-*.json")).read_text())
    jobs = {label: job["id"] for label, job in record["jobs"].items()}
    submitter.wait(list(jobs.values()), timeout=1200)
    return run_dir, jobs, submitter, overrides


def test_the_chain_is_one_job_per_step_with_afterok_dependencies(sbatch_run):
    _, jobs, submitter, _ = sbatch_run
    assert list(jobs) == [
        "bootstrap",
        "generate",
        "merge",
        "verify",
        "train-sft_verified",
        "eval-sft_verified",
        "table",
    ]
    assert submitter.job_field(f"{jobs['generate']}_1", "ArrayTaskId") == "1"
    assert submitter.job_field(jobs["train-sft_verified"], "NumNodes") == "2"
    assert submitter.job_field(jobs["train-sft_verified"], "NumTasks") == "2"


def test_generation_ran_as_two_array_tasks_and_matches_the_local_traces(sbatch_run, local_smoke_run):
    run_dir, _, _, _ = sbatch_run
    shards = sorted((run_dir / "generate" / "shards").glob("shard-?????-of-?????.jsonl"))  # not .errors.jsonl
    assert [path.name for path in shards] == ["shard-00000-of-00002.jsonl", "shard-00001-of-00002.jsonl"]
    assert all(read_jsonl(path) for path in shards)  # each array task generated its own part
    local = [without(trace, "elapsed_s") for trace in read_jsonl(local_smoke_run / "generate" / "traces.jsonl")]
    merged = [without(trace, "elapsed_s") for trace in read_jsonl(run_dir / "generate" / "traces.jsonl")]
    assert len(merged) == 32 * 2
    assert merged == local
    assert (run_dir / "generate" / "problems.jsonl").read_text() == (
        local_smoke_run / "generate" / "problems.jsonl"
    ).read_text()


def test_verification_keeps_the_same_traces(sbatch_run, local_smoke_run):
    run_dir, _, _, _ = sbatch_run
    verdicts = [without(v, "elapsed_s") for v in read_jsonl(run_dir / "verify" / "verdicts.jsonl")]
    assert verdicts == [without(v, "elapsed_s") for v in read_jsonl(local_smoke_run / "verify" / "verdicts.jsonl")]
    for name in ("verified.jsonl", "all.jsonl"):
        assert (run_dir / "verify" / "sft" / name).read_text() == (
            local_smoke_run / "verify" / "sft" / name
        ).read_text()


def test_two_node_training_matches_local_two_rank_training(sbatch_run, local_smoke_run):
    run_dir, jobs, _, _ = sbatch_run
    cluster_train, local_train = run_dir / "train" / "sft_verified", local_smoke_run / "train" / "sft_verified"
    complete = json.loads((cluster_train / "COMPLETE.json").read_text())
    assert complete["world_size"] == 2 and complete["steps"] == 6
    assert complete["provenance"]["config"]["train"]["num_nodes"] == 2
    losses = [row["train/loss"] for row in read_jsonl(cluster_train / "metrics.jsonl") if "train/loss" in row]
    local_losses = [row["train/loss"] for row in read_jsonl(local_train / "metrics.jsonl") if "train/loss" in row]
    assert losses == pytest.approx(local_losses, rel=1e-6)
    weights = load_file(cluster_train / "final" / "model.safetensors")
    local_weights = load_file(local_train / "final" / "model.safetensors")
    assert weights.keys() == local_weights.keys()
    for name, tensor in weights.items():
        torch.testing.assert_close(tensor, local_weights[name], rtol=1e-5, atol=1e-6, msg=name)
    # each rank kept its own Hydra log folder, named by the job
    ranks = sorted(path.name for path in (run_dir / "logs" / "train" / f"slurm-{jobs['train-sft_verified']}").iterdir())
    assert ranks == ["rank0", "rank1"]


def test_eval_and_table_match(sbatch_run, local_smoke_run):
    run_dir, _, _, _ = sbatch_run
    samples = run_dir / "eval" / "sft_verified" / "arithmetic" / "samples.jsonl"
    local_samples = local_smoke_run / "eval" / "sft_verified" / "arithmetic" / "samples.jsonl"
    assert len(read_jsonl(samples)) == 8 * 2
    assert read_jsonl(samples) == read_jsonl(local_samples)
    assert (run_dir / "tables" / "results.md").read_text() == (local_smoke_run / "tables" / "results.md").read_text()


def test_resubmitting_a_complete_run_submits_only_what_has_no_completion_marker(sbatch_run):
    run_dir, _, submitter, overrides = sbatch_run
    out = run_cli(
        [sys.executable, str(REPO / "slurm" / "pipeline.py"), "--dry-run", *overrides],
        cwd=run_dir.parent.parent,
        env=submitter.env,
    ).stdout
    # bootstrap (a cache that checks itself) and table (rebuilt from the eval results) always run
    scripts = [line.split()[-len(overrides) - 1] for line in out.splitlines() if line.startswith("sbatch ")]
    assert [Path(script).name for script in scripts] == ["bootstrap.sbatch", "table.sbatch"]
