"""A real SLURM cluster for the session (scripts/local_slurm.py), the smoke models, and a local run.

The cluster is two slurmd nodes on this machine, so multi-node jobs run for real; it starts
once, when the first slurm test needs it, and is stopped (every job cancelled, every daemon
ended) when the session ends. Tests that need it skip with the reason when it cannot run here
(not root, or slurm-wlm/munge missing: scripts/system_deps.sh installs them as root).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

PYTHON_BIN = str(Path(sys.executable).parent)
# The smoke experiment, evaluating only the trained student, with one CPU thread per training
# rank (so that one node x 2 ranks and 2 nodes x 1 rank compute bit for bit the same).
SMOKE = ["experiment=smoke", "train.num_threads=1", "pipeline.eval_models=[sft_verified]"]


def load_local_slurm():
    spec = importlib.util.spec_from_file_location("local_slurm", REPO / "scripts" / "local_slurm.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("local_slurm", module)
    spec.loader.exec_module(module)
    return module


def job_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment jobs are submitted with: this venv's commands first on PATH."""
    environ = dict(os.environ if base is None else base)
    environ["PATH"] = f"{PYTHON_BIN}{os.pathsep}{environ.get('PATH', '')}"
    environ["SKY_DISTILL_REPO"] = str(REPO)
    # Every node of the test cluster is this machine at 127.0.0.1 (NodeAddr); its hostname may
    # resolve elsewhere on a CI machine, so multi-node training meets there, not at $(hostname).
    environ["MASTER_ADDR"] = "127.0.0.1"
    return environ


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900):
    """Run `sky-distill ...` (or any command of this venv) and fail the test with its output if it fails."""
    result = subprocess.run(args, cwd=cwd, env=env or job_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


@pytest.fixture(scope="session")
def slurm_cluster():
    module = load_local_slurm()
    reason = module.unavailable_reason()
    if reason:
        pytest.skip(reason)
    # Not under pytest's tmp dir: munged wants every directory above its socket open to all.
    root = Path(tempfile.mkdtemp(prefix="sky-distill-slurm-"))
    root.chmod(0o755)
    cluster = module.LocalSlurm(root, nodes=2, cpus_per_node=4)
    try:
        cluster.start()
    except module.ClusterUnavailable as error:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"the local SLURM cluster did not start: {error}")
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


class Submitter:
    """sbatch and friends against the session's cluster, from one working directory."""

    def __init__(self, cluster, cwd: Path):
        self.cluster, self.cwd = cluster, cwd
        self.env = cluster.env(job_env())

    def run(self, *args: str, timeout: float = 120) -> str:
        return run_cli(list(args), self.cwd, self.env, timeout).stdout

    def sbatch(self, *args: str) -> str:
        return self.run("sbatch", "--parsable", *args).strip().split(";")[0]

    def job_field(self, job_id: str, name: str) -> str:
        for token in self.run("scontrol", "show", "job", job_id).split():
            if token.startswith(f"{name}="):
                return token.split("=", 1)[1]
        raise KeyError(name)

    def wait(self, job_ids: list[str], timeout: float = 900) -> dict[str, str]:
        states = self.cluster.wait_for_jobs(job_ids, timeout)
        failed = {job: state for job, state in states.items() if state != "COMPLETED"}
        assert not failed, f"jobs did not complete: {failed}; {self.explain(list(failed))}"
        return states

    def explain(self, job_ids: list[str]) -> str:
        """What SLURM says of the jobs (state, reason, exit code) and the tails of every log."""
        shown = [self.cluster.command("scontrol", "show", "job", job, check=False).stdout for job in job_ids]
        daemons = [
            f"==> {path} <==\n{path.read_text(errors='replace')[-1500:]}"
            for path in sorted((self.cluster.root / "log").glob("*.out"))
        ]
        return "scontrol:\n" + "\n".join(shown) + "\nlogs:\n" + self.logs() + "\n" + "\n".join(daemons)

    def wait_until(self, condition, timeout: float, what: str, interval: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(interval)

    def start_requeued(self, job_id: str, restarts: int = 1, timeout: float = 300) -> None:
        """Wait until a requeued job runs again, releasing it if SLURM held it.

        SLURM lets a requeued job start only once its revoked credential has expired (the test
        cluster's `cred_expire=10`); forcing it earlier gets it killed ("Job credential revoked").
        """

        seen_pending = False

        def started() -> bool:
            nonlocal seen_pending
            if self.job_field(job_id, "Restarts") != str(restarts):
                return False
            state = self.job_field(job_id, "JobState")
            if state != "PENDING":
                return seen_pending  # before it is pending again, the old run may still be ending
            seen_pending = True
            if self.job_field(job_id, "Reason") in ("JobHeldAdmin", "JobHeldUser"):
                self.cluster.command("scontrol", "release", job_id, check=False)
            return False

        self.wait_until(started, timeout, f"requeued job {job_id} to start again", interval=1.0)

    def logs(self) -> str:
        """The tail of every SLURM log under the working directory, for failure messages."""
        parts = []
        for path in sorted(self.cwd.rglob("*.out")):
            parts.append(f"==> {path} <==\n{path.read_text(errors='replace')[-2500:]}")
        return "\n".join(parts)


@pytest.fixture(scope="session")
def local_smoke_run(tmp_path_factory, smoke_models) -> Path:
    """The smoke pipeline run locally (`sky-distill pipeline`): the reference the SLURM path must match."""
    root = tmp_path_factory.mktemp("local")
    run_cli(["sky-distill", "pipeline", *SMOKE, f"paths.root={root}", f"paths.models_dir={smoke_models}"], cwd=root)
    return root / "runs" / "smoke"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def without(record: dict, *keys: str) -> dict:
    return {key: value for key, value in record.items() if key not in keys}
