"""Fast checks of the SLURM and sweep launching, without a cluster.

The job planner of slurm/pipeline.py, sweep run directories, the sbatch scripts' resources,
and the preemption protocol of slurm/common.sh, run by real bash with a stand-in `scontrol`
that records what it was asked to do.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sky_distill.config import stage_config, to_container
from sky_distill.runs import mark_complete
from sky_distill.sweeps import sweep_dirname, sweep_run_dir
from tests.conftest import REPO, compose_config

SLURM = REPO / "slurm"
SCRIPTS = sorted(SLURM.glob("*.sbatch"))


def load_planner():
    """slurm/pipeline.py as a module (it is a script, not part of the package)."""
    if "slurm_pipeline" not in sys.modules:
        spec = importlib.util.spec_from_file_location("slurm_pipeline", SLURM / "pipeline.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["slurm_pipeline"] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
    return sys.modules["slurm_pipeline"]


def plan(overrides: list[str]):
    planner = load_planner()
    cfg = compose_config(overrides, stage="pipeline")
    run_dir = Path(stage_config(cfg, "pipeline")["paths"].run_dir)
    return planner.plan_jobs(to_container(cfg), run_dir, overrides), run_dir


# --- the pipeline's jobs ------------------------------------------------------------------------


def test_the_demo_pipeline_becomes_a_chain_of_jobs(tmp_path):
    jobs, _ = plan([f"paths.root={tmp_path}", "generate.shard_count=4", "seeds=null", "experiment=demo_kd"])
    by_label = {job.label: job for job in jobs}
    assert list(by_label) == [
        "bootstrap",
        "generate",
        "merge",
        "verify",
        "train-sft_verified",
        "train-sft_unverified",
        "train-sft_kd_verified",
        "eval-teacher",
        "eval-student",
        "eval-sft_verified",
        "eval-sft_unverified",
        "eval-sft_kd_verified",
        "table",
    ]
    assert by_label["generate"].array == 4 and by_label["generate"].after == ["bootstrap"]
    assert by_label["merge"].after == ["generate"]
    assert by_label["verify"].after == ["merge"]
    assert by_label["train-sft_unverified"].after == ["verify"]
    assert "train.name=sft_unverified" in by_label["train-sft_unverified"].overrides
    # the teacher and base student are scored as soon as they exist; a trained student after its training
    assert by_label["eval-teacher"].after == ["bootstrap"]
    assert by_label["eval-sft_verified"].after == ["train-sft_verified"]
    assert by_label["eval-sft_verified"].overrides[-1] == "eval.models=[sft_verified]"
    assert by_label["train-sft_kd_verified"].after == ["verify"]
    assert "train.loss=distill" in by_label["train-sft_kd_verified"].overrides
    assert by_label["table"].after == [
        "eval-teacher",
        "eval-student",
        "eval-sft_verified",
        "eval-sft_unverified",
        "eval-sft_kd_verified",
    ]
    assert all(job.overrides[:2] == [f"paths.root={tmp_path}", "generate.shard_count=4"] for job in jobs)


def test_an_experiment_over_seeds_is_one_chain_per_seed(tmp_path):
    jobs, run_dir = plan([f"paths.root={tmp_path}", "seeds=[0,1]", "generate.shard_count=2"])
    by_label = {job.label: job for job in jobs}
    # the teacher and the base student are the same in every seed: evaluated once, after the bootstrap
    assert [label for label in by_label if not label.startswith("seed-")] == [
        "bootstrap",
        "eval-teacher",
        "eval-student",
        "table",
    ]
    assert by_label["eval-teacher"].after == ["bootstrap"] and by_label["eval-student"].after == ["bootstrap"]
    assert not any(f"paths.run_dir='{run_dir / 'seed-0'}'" in o for o in by_label["eval-teacher"].overrides)
    for seed in (0, 1):
        chain = f"seed-{seed}."
        assert by_label[chain + "generate"].after == ["bootstrap"] and by_label[chain + "generate"].array == 2
        assert by_label[chain + "merge"].after == [chain + "generate"]
        assert by_label[chain + "verify"].after == [chain + "merge"]
        assert by_label[chain + "train-sft_verified"].after == [chain + "verify"]
        assert by_label[chain + "eval-sft_verified"].after == [chain + "train-sft_verified"]
        # on-policy rounds from sft_verified wait for it; the on-policy script takes the job
        assert by_label[chain + "train-sft_verified_opd"].after == [chain + "verify", chain + "train-sft_verified"]
        assert "train.loss=on_policy" in by_label[chain + "train-sft_verified_opd"].overrides
        assert chain + "eval-teacher" not in by_label
        # every job of a chain runs with its seed, in its own run directory
        for label, job in by_label.items():
            if label.startswith(chain):
                assert f"seed={seed}" in job.overrides
                assert f"paths.run_dir='{run_dir / f'seed-{seed}'}'" in job.overrides
    evals = [label for label in by_label if "eval-" in label]
    assert len(evals) == 2 * 4 + 2 and by_label["table"].after == evals  # 4 students per seed
    # a finished seed submits nothing again; the other seed's chain is untouched
    students = ("sft_verified", "sft_unverified", "opd", "sft_verified_opd")
    for stage in ("generate", "verify", *(f"train/{student}" for student in students)):
        mark_complete(run_dir / "seed-0" / stage, {})
    for model in students:
        mark_complete(run_dir / "seed-0" / "eval" / model / "arithmetic", {})
    labels = [job.label for job in plan([f"paths.root={tmp_path}", "seeds=[0,1]", "generate.shard_count=2"])[0]]
    assert not any(label.startswith("seed-0.") for label in labels) and "seed-1.generate" in labels


def test_one_shard_needs_no_merge_job(tmp_path):
    jobs, _ = plan([f"paths.root={tmp_path}", "experiment=sky_t1_32b", "generate.shard_count=1"])
    labels = [job.label for job in jobs]
    assert "merge" not in labels and "bootstrap" not in labels  # the real recipe has no bootstrap stage
    assert jobs[labels.index("verify")].after == ["generate"]
    assert jobs[labels.index("eval-teacher")].after == []


def test_complete_steps_are_skipped_and_their_dependants_do_not_wait(tmp_path):
    overrides = [f"paths.root={tmp_path}", "experiment=smoke"]
    _, run_dir = plan(overrides)
    for stage in ("generate", "verify", "train/sft_verified"):
        mark_complete(run_dir / stage, {})
    jobs, _ = plan(overrides)
    by_label = {job.label: job for job in jobs}
    assert list(by_label) == ["bootstrap", "eval-teacher", "eval-sft_verified", "table"]
    assert by_label["eval-sft_verified"].after == []
    mark_complete(run_dir / "eval" / "tiny-teacher" / "arithmetic", {})
    assert [job.label for job in plan(overrides)[0]] == ["bootstrap", "eval-sft_verified", "table"]


def test_a_model_named_by_its_hub_id_gets_a_safe_job_name(tmp_path):
    jobs, _ = plan([f"paths.root={tmp_path}", "experiment=smoke", "pipeline.eval_models=[Qwen/Qwen2.5-7B-Instruct]"])
    evals = [job for job in jobs if job.stage == "eval"]
    assert [(job.label, job.after) for job in evals] == [("eval-Qwen_Qwen2.5-7B-Instruct", ["bootstrap"])]
    assert evals[0].overrides[-1] == "eval.models=[Qwen/Qwen2.5-7B-Instruct]"


def test_sbatch_commands_carry_dependencies_arrays_logs_and_resources(tmp_path):
    planner = load_planner()
    jobs, run_dir = plan([f"paths.root={tmp_path}", "experiment=smoke", "generate.shard_count=2"])
    ids = {job.label: str(100 + index) for index, job in enumerate(jobs)}
    generate = planner.sbatch_command(jobs[1], ids, run_dir, "smoke", ["--partition=cpu"], ["--time=10"])
    assert generate[:4] == [
        "sbatch",
        "--parsable",
        "--job-name=smoke.generate",
        f"--output={run_dir}/logs/slurm/%x-%A_%a.out",
    ]
    assert "--array=0-1" in generate and "--dependency=afterok:100" in generate
    assert "--kill-on-invalid-dep=yes" in generate
    assert (
        generate.index("--partition=cpu") < generate.index("--time=10") < generate.index(str(SLURM / "generate.sbatch"))
    )
    assert generate[-3:] == [f"paths.root={tmp_path}", "experiment=smoke", "generate.shard_count=2"]
    table = planner.sbatch_command(jobs[-1], ids, run_dir, "smoke", [], [])
    assert f"--dependency=afterok:{ids['eval-teacher']}:{ids['eval-sft_verified']}" in table


def test_dry_run_prints_the_commands_and_submits_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SLURM / "pipeline.py"), "--dry-run", "--sbatch-train=--nodes=4", f"paths.root={tmp_path}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PATH": "/nonexistent"},  # no sbatch to call
    )
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if line.startswith("sbatch ")]
    # bootstrap; per seed (3) one shard (no merge job), verify, four students trained and evaluated;
    # the teacher and base student evaluated once; table
    assert len(commands) == 1 + 3 * (2 + 4 + 4) + 2 + 1
    assert all("--nodes=4" in line for line in commands if "train.sbatch" in line)
    assert not any("--nodes=4" in line for line in commands if "train.sbatch" not in line)
    assert not (tmp_path / "runs").exists()


def test_a_bad_override_is_one_line_naming_the_key(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SLURM / "pipeline.py"), "--dry-run", f"paths.root={tmp_path}", "train.learning_rate=-1"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("slurm/pipeline.py: error: invalid config: train.learning_rate")
    assert len(result.stderr.strip().splitlines()) == 1


# --- sweeps -------------------------------------------------------------------------------------


def test_sweep_job_directories_are_safe_unique_and_stable():
    assert sweep_dirname("train.learning_rate=1e-05,train.max_steps=6") == "train.learning_rate=1e-05,train.max_steps=6"
    assert sweep_dirname("teacher.path=/models/qwq,x=[a,b]") == "teacher.path=_models_qwq,x=_a,b"
    long_a, long_b = "k=" + "a" * 300, "k=" + "a" * 299 + "b"
    assert len(sweep_dirname(long_a)) <= 120 and sweep_dirname(long_a) != sweep_dirname(long_b)
    assert sweep_dirname(long_a) == sweep_dirname(long_a)
    assert sweep_run_dir("/r/runs/demo", "seed=1") == "/r/runs/demo/seed=1"
    assert sweep_run_dir("/r/runs/demo", "") == "/r/runs/demo"  # e.g. a sweep over run_name alone


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=local"]], ids=["basic", "submitit-local"])
def test_a_local_multirun_gives_each_job_its_own_run_directory(tmp_path, launcher):
    """Two `table` jobs (a stage that needs no engine) through the real CLI, in-process or as submitit jobs."""
    runs = tmp_path / "runs" / "demo"
    for seed, score in ((1, 0.5), (2, 0.25)):  # each job's own eval result, where its run dir will be
        summary = {"model": "m", "benchmark": "arithmetic", "eval/arithmetic/avg@n": score}
        mark_complete(runs / f"seed={seed},seeds=null" / "eval" / "m" / "arithmetic", summary)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sky_distill.cli",
            "table",
            "--multirun",
            *launcher,
            f"paths.root={tmp_path}",
            "seed=1,2",
            "seeds=null",  # each job is one run of its own seed (not an experiment over seeds)
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| m | 50.0" in (runs / "seed=1,seeds=null" / "tables" / "results.md").read_text()
    assert "| m | 25.0" in (runs / "seed=2,seeds=null" / "tables" / "results.md").read_text()
    assert not (runs / "tables").exists()
    assert len(list((runs / "multirun").glob("table-*/multirun.yaml"))) == 1


def test_the_pipeline_hands_its_run_directory_to_every_stage():
    from sky_distill.pipeline import quote_override

    assert quote_override("/r/runs/demo/a=1,b=[x]") == "'/r/runs/demo/a=1,b=[x]'"
    cfg = compose_config([f"paths.run_dir={quote_override('/r/runs/demo/a=1,b=2')}"], stage="verify")
    assert stage_config(cfg, "verify")["paths"].run_dir == "/r/runs/demo/a=1,b=2"


def test_launcher_configs_compose():
    for launcher, target in (("slurm", "SlurmLauncher"), ("local", "LocalLauncher")):
        cfg = compose_config([f"hydra/launcher={launcher}"], stage="train")
        assert cfg.hydra.launcher._target_.endswith(target)
        assert cfg.hydra.launcher.submitit_folder.endswith("/.submitit/%j")
    assert compose_config(["hydra/launcher=slurm"]).hydra.launcher.max_num_timeout == 3


# --- the sbatch scripts -------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_scripts_parse_state_resources_and_pass_overrides_through(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    directives = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    for option in ("--job-name", "--nodes", "--time", "--cpus-per-task", "--requeue", "--open-mode=append"):
        assert any(line.startswith(f"#SBATCH {option}") for line in directives), f"{script.name} lacks {option}"
    assert '"$@"' in text and "sky_run " in text
    assert "grep" not in text and "awk" not in text and "yaml" not in text.lower()
    if script.stem != "table":
        assert any(line.startswith("#SBATCH --signal=B:USR1@") for line in directives)


def test_the_train_script_derives_the_world_from_the_allocation():
    text = (SLURM / "train.sbatch").read_text()
    assert "train.num_nodes=$nodes" in text and "train.num_procs=$LOCAL_WORLD_SIZE" in text
    assert "RANK=$SLURM_PROCID" in text and "WORLD_SIZE=$SLURM_NTASKS" in text
    assert "sky_run checkpoint srun" in text
    assert "sky_run resume" in (SLURM / "generate.sbatch").read_text()


# --- the preemption protocol (slurm/common.sh) ---------------------------------------------------


@pytest.fixture
def protocol(tmp_path):
    """Run `sky_run POLICY STEP` in bash with a fake scontrol that logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.calls"
    (bin_dir / "scontrol").touch(mode=0o755)

    def start(policy: str, step: str, scontrol_status: int = 0) -> subprocess.Popen:
        (bin_dir / "scontrol").write_text(f'#!/bin/bash\necho "$@" >> {calls}\nexit {scontrol_status}\n')
        script = f"set -euo pipefail\nsource {SLURM / 'common.sh'}\nsky_run {policy} bash -c {step!r}\necho after-step"
        environ = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "42"}
        return subprocess.Popen(
            ["bash", "-c", script], env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def requeues() -> list[str]:
        return calls.read_text().splitlines() if calls.exists() else []

    return start, requeues, tmp_path


def wait_for_file(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_a_step_that_succeeds_passes_through(protocol):
    start, requeues, _ = protocol
    process = start("checkpoint", "exit 0")
    out, _ = process.communicate(timeout=20)
    assert process.returncode == 0 and "after-step" in out and requeues() == []


def test_a_failing_step_fails_the_job_without_requeue(protocol):
    start, requeues, _ = protocol
    process = start("resume", "exit 3")
    _, err = process.communicate(timeout=20)
    assert process.returncode == 3 and "step failed with status 3" in err and requeues() == []


def test_the_warning_is_forwarded_and_a_checkpointed_step_is_requeued(protocol):
    start, requeues, tmp_path = protocol
    ready, got = tmp_path / "ready", tmp_path / "got-usr1"
    step = f"trap 'touch {got}; exit 85' USR1; touch {ready}; while true; do sleep 0.1; done"
    process = start("checkpoint", step)
    wait_for_file(ready)
    process.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@N delivers to the batch shell
    out, err = process.communicate(timeout=20)
    assert got.exists(), err  # the step received the warning
    assert requeues() == ["requeue 42"]
    assert process.returncode == 0 and "after-step" not in out


def test_a_resumable_step_is_requeued_at_once_on_the_warning(protocol):
    start, requeues, tmp_path = protocol
    ready = tmp_path / "ready"
    process = start("resume", f"touch {ready}; sleep 30")
    wait_for_file(ready)
    process.send_signal(signal.SIGUSR1)
    _, err = process.communicate(timeout=20)
    assert requeues() == ["requeue 42"] and process.returncode == 0
    assert "goes back to the queue" in err


def test_a_checkpointed_step_that_cannot_be_requeued_fails_the_job(protocol):
    start, requeues, _ = protocol
    process = start("checkpoint", "exit 85", scontrol_status=1)
    _, err = process.communicate(timeout=20)
    assert requeues() == ["requeue 42"] and process.returncode == 85
    assert "could not requeue" in err
