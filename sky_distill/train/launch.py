"""Starting the training ranks: torchrun on this node, or in-process when already launched.

`python -m sky_distill.train.launch JOB_JSON` is what each rank runs. Under SLURM, every
node runs torchrun with the rendezvous taken from the SLURM environment (see slurm/train.sbatch).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from sky_distill.errors import SkyDistillError
from sky_distill.train.distributed import free_port
from sky_distill.train.job import TrainJob

log = logging.getLogger(__name__)


class LaunchError(SkyDistillError):
    """The training ranks could not be started or did not finish."""


def rendezvous_args(num_nodes: int, environ: dict[str, str]) -> list[str]:
    """torchrun's node arguments: standalone on one node, c10d rendezvous across SLURM nodes."""
    if num_nodes == 1:
        return ["--standalone", "--nnodes=1"]
    host = environ.get("MASTER_ADDR")
    if not host:
        nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
        if not nodelist:
            raise LaunchError("multi-node training needs MASTER_ADDR or a SLURM allocation (SLURM_JOB_NODELIST)")
        host = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True
        ).stdout.split()[0]
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


def launch(job: TrainJob) -> None:
    """Write the job file and run every local rank of it; raise if any rank fails."""
    output_dir = Path(job.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    job_file = job.write(output_dir)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # already one rank of a launched job
        from sky_distill.train.sft import run

        run(job)
        return
    environ = dict(os.environ)
    if job.train.num_nodes == 1:
        environ["MASTER_PORT"] = str(free_port())
    environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // job.train.num_procs)))
    command = torchrun_command(job_file, job.train.num_procs, job.train.num_nodes, environ)
    log.info("launching %d rank(s): %s", job.train.num_procs * job.train.num_nodes, " ".join(command))
    completed = subprocess.run(command, env=environ)
    if completed.returncode != 0:
        raise LaunchError(
            f"training ranks exited with status {completed.returncode}; see the log above and {output_dir}"
        )


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m sky_distill.train.launch JOB_JSON")
    from sky_distill.train.sft import run

    run(TrainJob.read(sys.argv[1]))


if __name__ == "__main__":
    main()
