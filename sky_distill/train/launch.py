"""Starting the training ranks: torchrun on this node, or in-process when already launched.

`python -m sky_distill.train.launch JOB_JSON` runs a written job: as one rank when the
environment already names it (RANK and WORLD_SIZE, as torchrun sets), otherwise by starting
torchrun for this node's ranks. Multi-node: run the launcher once per node under
`srun --ntasks-per-node=1`; each node's torchrun joins a c10d rendezvous on the first node of
the allocation (SLURM_JOB_NODELIST), keyed by SLURM_JOB_ID.

Preemption (see `preemption.py`): the launcher forwards SIGUSR1/SIGTERM to the ranks and
exits with `REQUEUE_EXIT_CODE` once they have checkpointed and stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from sky_distill.errors import SkyDistillError
from sky_distill.train.distributed import free_port
from sky_distill.train.extensions import clear_stale_locks
from sky_distill.train.job import TrainJob
from sky_distill.train.preemption import (
    PREEMPTED_FILE,
    REQUEUE_EXIT_CODE,
    STOP_FILE,
    STOP_SIGNALS,
    TrainingPreempted,
    child_processes,
    die_with_parent,
    ignore_stop_signals,
    signal_processes,
)

log = logging.getLogger(__name__)


class LaunchError(SkyDistillError):
    """The training ranks could not be started or did not finish."""


def first_host(nodelist: str) -> str:
    return subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True
    ).stdout.split()[0]


def rendezvous_args(num_nodes: int, environ: dict[str, str]) -> list[str]:
    """torchrun's node arguments: a loopback rendezvous on one node, c10d across SLURM nodes.

    One node never resolves its own hostname (torchrun's `--standalone` does, and hangs where
    the name points at an address this machine cannot reach): the store, the ranks' MASTER_ADDR
    and gloo all stay on 127.0.0.1.
    """
    if num_nodes == 1:
        port = environ.get("MASTER_PORT", "29500")
        return ["--nnodes=1", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--local-addr=127.0.0.1"]
    host = environ.get("MASTER_ADDR")
    if not host:
        nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
        if not nodelist:
            raise LaunchError("multi-node training needs MASTER_ADDR or a SLURM allocation (SLURM_JOB_NODELIST)")
        host = first_host(nodelist)
    port = environ.get("MASTER_PORT", "29500")
    job_id = environ.get("SLURM_JOB_ID", "sky-distill")
    return [
        f"--nnodes={num_nodes}",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={host}:{port}",
        f"--rdzv_id={job_id}",
    ]


def torchrun_command(job_file: Path, num_procs: int, num_nodes: int, environ: dict[str, str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={num_procs}",
        *rendezvous_args(num_nodes, environ),
        "-m",
        "sky_distill.train.launch",
        str(job_file),
    ]


def run_rank(job: TrainJob) -> None:
    """Run this process's rank of the job; raise `TrainingPreempted` if it stopped on request."""
    if os.environ.get("TORCHELASTIC_RUN_ID"):  # started by torchrun: do not outlive it
        die_with_parent()
    from sky_distill.train.sft import run

    summary = run(job)
    _shutdown_process_group()
    if summary.get("preempted"):
        raise TrainingPreempted(summary["step"])


def _shutdown_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _run_torchrun(command: list[str], environ: dict[str, str], output_dir: Path) -> int:
    """Run torchrun; forward stop signals to its ranks (it ignores them itself) and leave the stop file."""
    process = subprocess.Popen(command, env=environ, preexec_fn=ignore_stop_signals)

    def forward(signum: int, frame: object) -> None:
        log.warning("received %s: asking the ranks to checkpoint and stop", signal.Signals(signum).name)
        (output_dir / STOP_FILE).touch()
        signal_processes(child_processes().get(process.pid, []), signal.SIGUSR1)

    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        return process.wait()
    except BaseException:  # Ctrl-C, or an error here: torchrun stops its ranks on SIGINT (it ignores SIGTERM)
        process.send_signal(signal.SIGINT)
        process.wait()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def launch(job: TrainJob) -> None:
    """Write the job file and run every local rank of it.

    Raises `TrainingPreempted` (a SystemExit with status 85) if the ranks stopped on a signal
    after checkpointing, `LaunchError` if they failed.
    """
    output_dir = Path(job.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    job_file = job.write(output_dir)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # already one rank of a launched job
        run_rank(job)
        return
    for stale in (STOP_FILE, PREEMPTED_FILE):
        (output_dir / stale).unlink(missing_ok=True)
    clear_stale_locks()  # a lock left by a killed process would stall every rank forever
    environ = dict(os.environ)
    if job.train.num_nodes == 1:
        environ["MASTER_PORT"] = str(free_port())
    environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // job.train.num_procs)))
    # torchrun must not tear the ranks down on SIGTERM while they save; they handle it themselves.
    environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = "SIGINT,SIGHUP,SIGQUIT"
    command = torchrun_command(job_file, job.train.num_procs, job.train.num_nodes, environ)
    log.info("launching %d rank(s): %s", job.train.num_procs * job.train.num_nodes, " ".join(command))
    returncode = _run_torchrun(command, environ, output_dir)
    (output_dir / STOP_FILE).unlink(missing_ok=True)
    preempted = output_dir / PREEMPTED_FILE
    if preempted.exists():
        from sky_distill.runs import read_json

        step = int(read_json(preempted)["step"])
        log.warning("training stopped at step %d with a checkpoint; exiting %d to be requeued", step, REQUEUE_EXIT_CODE)
        raise TrainingPreempted(step)
    if returncode != 0:
        raise LaunchError(f"training ranks exited with status {returncode}; see the log above and {output_dir}")


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m sky_distill.train.launch JOB_JSON")
    job = TrainJob.read(sys.argv[1])
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        run_rank(job)
    else:
        from sky_distill.log import setup_logging

        setup_logging()
        launch(job)


if __name__ == "__main__":
    main()
