"""The recipe rehearsal through SLURM on the test cluster.

`r1_distill_7b` with a served teacher runs the whole chain: slurm/serve.sbatch starts a real vLLM
server (the tiny teacher, one node), the 16-task generation array waits for its URL and samples
through the OpenAI-compatible backend, the merge ends the server, then verify, training on 2 nodes,
eval and the table. `sky_t1_32b` runs its chain from the local rehearsal's generation (verify,
training on 2 nodes x 1 rank, eval, table) and must give what the local rehearsal gave: a
16-task array of in-process vLLM engines costs 16 engine starts (4 tasks took 3 min here: ~12 min).
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from tests.conftest import REPO
from tests.recipes import rehearsal_overrides
from tests.slurm.conftest import Submitter, read_jsonl, run_cli, without

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CPU_JOBS = ["--sbatch=--gpus-per-node=0", "--sbatch=--cpus-per-task=1"]
TWO_NODE_TRAINING = ["--sbatch-train=--nodes=2", "--sbatch-train=--ntasks-per-node=1"]


def submit_pipeline(submitter: Submitter, overrides: list[str], resources: list[str]) -> dict[str, str]:
    run_cli([sys.executable, str(REPO / "slurm" / "pipeline.py"), *resources, *overrides], cwd=submitter.cwd,
            env=submitter.env)  # fmt: skip
    (record,) = (submitter.cwd / "runs").glob("*/logs/slurm/jobs-*.json")
    jobs = {label: job["id"] for label, job in json.loads(record.read_text())["jobs"].items()}
    submitter.wait(list(jobs.values()), timeout=1500)
    return jobs


@pytest.fixture(scope="module")
def sky_t1_on_slurm(slurm_cluster, smoke_models, hub_copies, recipe_rehearsals, tmp_path_factory):
    root = tmp_path_factory.mktemp("sky_t1_32b-slurm")
    shutil.copytree(recipe_rehearsals["sky_t1_32b"][0] / "generate", root / "runs" / "sky_t1_32b" / "generate")
    submitter = Submitter(slurm_cluster, root)
    overrides = rehearsal_overrides("sky_t1_32b", root, smoke_models, hub_copies[0])
    jobs = submit_pipeline(submitter, overrides, [*CPU_JOBS, *TWO_NODE_TRAINING])
    run_cli([sys.executable, "-m", "sky_distill.cli", "plan", *overrides], cwd=root, env=submitter.env)
    return root / "runs" / "sky_t1_32b", jobs, submitter


def test_sky_t1_runs_its_chain_on_slurm_with_two_node_training(sky_t1_on_slurm):
    run_dir, jobs, _ = sky_t1_on_slurm
    assert list(jobs) == ["verify", "train-sft_verified", "eval-sft_verified", "table"]  # generation was complete
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["traces_measured"] and plan["train"]["measured"]["world_size"] == 2
    assert plan["train"]["measured"]["steps"] == plan["train"]["optimizer_steps"]
    print(json.dumps(plan["train"], indent=1))


def test_sky_t1_on_slurm_matches_the_local_rehearsal(sky_t1_on_slurm, recipe_rehearsals):
    run_dir, _, _ = sky_t1_on_slurm
    local = recipe_rehearsals["sky_t1_32b"][0]
    verdicts = [without(row, "elapsed_s") for row in read_jsonl(run_dir / "verify/verdicts.jsonl")]
    assert verdicts == [without(row, "elapsed_s") for row in read_jsonl(local / "verify/verdicts.jsonl")]
    assert (run_dir / "verify/sft/verified.jsonl").read_text() == (local / "verify/sft/verified.jsonl").read_text()
    losses = [row["train/loss"] for row in read_jsonl(run_dir / "train/sft_verified/metrics.jsonl")]
    local_losses = [row["train/loss"] for row in read_jsonl(local / "train/sft_verified/metrics.jsonl")]
    assert losses == pytest.approx(local_losses, rel=1e-6)  # 2 nodes x 1 rank = 1 node x 2 ranks
    assert (run_dir / "tables/results.md").read_text() == (local / "tables/results.md").read_text()


@pytest.fixture(scope="module")
def served_r1_on_slurm(slurm_cluster, smoke_models, hub_copies, tmp_path_factory):
    root = tmp_path_factory.mktemp("r1_distill_7b-served")
    submitter = Submitter(slurm_cluster, root)
    submitter.env.update(SKY_SERVE_HOST="127.0.0.1", SKY_SERVE_POLL_S="2")  # the test nodes' names do not resolve
    rehearsal = rehearsal_overrides("r1_distill_7b", root, smoke_models, hub_copies[0])
    teacher = next(item for item in rehearsal if item.startswith("teacher.path=")).split("=", 1)[1]
    overrides = [
        *(item for item in rehearsal if item != "teacher=tiny" and not item.startswith("teacher.path=")),
        # the served R1 teacher, with the tiny teacher behind it on one CPU node
        "teacher=deepseek_r1_served",
        f"teacher.path={teacher}",
        "teacher.prompt_template='{problem}'",
        "teacher.thought_format=think",
        f"teacher.engine.tokenizer={teacher}",
        "teacher.engine.concurrency=8",
        "teacher.serve.nodes=1",
        "teacher.serve.gpus_per_node=0",
        "teacher.serve.tensor_parallel_size=1",
        "teacher.serve.pipeline_parallel_size=1",
        "teacher.serve.dtype=float32",
        "teacher.serve.max_model_len=512",
        "teacher.serve.reasoning_parser=null",
        "teacher.serve.args=['--enforce-eager']",
        "teacher.serve.startup_timeout_s=600",
        "teacher.serve.port=18431",
    ]
    jobs = submit_pipeline(submitter, overrides, [*CPU_JOBS, *TWO_NODE_TRAINING, "--sbatch-serve=--cpus-per-task=2"])
    return root / "runs" / "r1_distill_7b", jobs, submitter, overrides


def test_a_served_teacher_is_started_first_and_stopped_after_the_merge(served_r1_on_slurm):
    run_dir, jobs, submitter, overrides = served_r1_on_slurm
    assert list(jobs)[:3] == ["serve", "generate", "merge"]
    (record,) = (run_dir / "logs" / "slurm").glob("jobs-*.json")
    chain = json.loads(record.read_text())["jobs"]
    assert chain["generate"]["after_start"] == ["serve"] and chain["merge"]["after"] == ["generate"]
    assert (run_dir / "serve" / "deepseek-r1.url").read_text().strip() == "http://127.0.0.1:18431/v1"
    traces = read_jsonl(run_dir / "generate" / "traces.jsonl")
    assert len(traces) == 8 * 3 + 2 + 2 + 4 and {trace["engine"] for trace in traces} == {"openai"}
    assert len(list((run_dir / "generate" / "shards").glob("shard-?????-of-00016.summary.json"))) == 16
    (log,) = (run_dir / "logs" / "slurm").glob("*serve-*.out")
    assert "generation is complete" in log.read_text()  # the server stopped itself
    assert (run_dir / "train" / "sft_verified" / "COMPLETE.json").exists()
    assert (run_dir / "tables" / "results.md").exists()
