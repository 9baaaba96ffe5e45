#!/usr/bin/env python3
"""A throwaway SLURM cluster on this machine, for the slurm tests and for trying slurm/ by hand.

Starts munged, slurmctld and one slurmd per node (as root), with every file (munge key and
socket, slurm.conf, state, spool, logs) under one directory, on free ports, so it touches no
system configuration and can run beside a real cluster's daemons. Debian packages:
`slurm-wlm munge` (scripts/system_deps.sh installs them). Several nodes share this host (each
slurmd on its own port), which is enough to run multi-node jobs for real.

    python scripts/local_slurm.py start /tmp/slurm     # prints `export SLURM_CONF=...`
    SLURM_CONF=/tmp/slurm/slurm.conf sbatch ...
    python scripts/local_slurm.py stop /tmp/slurm      # cancels jobs, stops every daemon

Nodes get more CPUs than the machine has (`SlurmdParameters=config_overrides`) so that small
jobs can run side by side on a 2-core machine; memory is not a consumable resource.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo", "srun")
STATE_FILE = "cluster.json"


class ClusterUnavailable(RuntimeError):
    """SLURM cannot run here (not root, packages missing, daemons would not start); says why."""


def unavailable_reason() -> str | None:
    """Why a local cluster cannot be started on this machine, or None if it can."""
    if os.name != "posix" or os.geteuid() != 0:
        return "the local SLURM cluster runs its daemons as root (run the slurm tests as root, as CI does)"
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        return f"SLURM is not installed (missing {', '.join(missing)}); run scripts/system_deps.sh as root"
    return None


def free_ports(count: int) -> list[int]:
    sockets, ports = [], []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
            ports.append(probe.getsockname()[1])
    finally:
        for probe in sockets:
            probe.close()
    return ports


def slurm_conf(
    root: Path, host: str, ctld_port: int, node_ports: list[int], cpus: int, memory_mb: int, cluster: str
) -> str:
    """The text of slurm.conf for nodes node1..nodeN on this host."""
    lines = [
        f"# A local test cluster written by scripts/local_slurm.py; everything lives under {root}",
        f"ClusterName={cluster}",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        f"AuthInfo=socket={root}/munge/munge.socket,cred_expire=10",  # a requeued job may start again after 10 s
        "CredType=cred/munge",
        f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool/%n",
        f"SlurmctldPidFile={root}/run/slurmctld.pid",
        f"SlurmdPidFile={root}/run/slurmd-%n.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log",
        f"SlurmdLogFile={root}/log/slurmd-%n.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=sched_min_interval=200000",
        "JobCompType=jobcomp/none",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "SlurmdParameters=config_overrides",
        "KillWait=10",
        "MinJobAge=3600",
        "SlurmdTimeout=60",
        "InactiveLimit=0",
    ]
    for index, port in enumerate(node_ports, start=1):
        lines.append(
            f"NodeName=node{index} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} "
            f"CPUs={cpus} Boards=1 SocketsPerBoard=1 CoresPerSocket={cpus} ThreadsPerCore=1 "
            f"RealMemory={memory_mb} State=UNKNOWN"
        )
    lines.append("PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


@dataclass
class LocalSlurm:
    """One local cluster: its directory, its daemons' process ids, and the environment to reach it."""

    root: Path
    nodes: int = 2
    cpus_per_node: int = 4
    memory_mb: int = 8000
    cluster: str = "skylocal"
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment whose SLURM commands talk to this cluster."""
        environ = dict(os.environ if base is None else base)
        environ["SLURM_CONF"] = str(self.conf)
        return environ

    def command(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a SLURM client command (sbatch, squeue, ...) against this cluster."""
        result = subprocess.run(args, env=self.env(), capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> LocalSlurm:
        reason = unavailable_reason()
        if reason:
            raise ClusterUnavailable(reason)
        self.root = self.root.resolve()
        closed = [str(p) for p in self.root.parents if p.exists() and not os.stat(p).st_mode & 0o001]
        if closed:
            raise ClusterUnavailable(
                f"munged needs every directory above its socket searchable by all; {closed[0]} is not: "
                "put the cluster elsewhere (e.g. under /tmp)"
            )
        for sub in ("munge", "state", "run", "log", *(f"spool/node{i}" for i in range(1, self.nodes + 1))):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o755)  # munged wants its socket directory searchable by all
        key = self.root / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
            key.chmod(0o400)
        host = socket.gethostname().split(".")[0]
        ctld_port, *node_ports = free_ports(1 + self.nodes)
        self.conf.write_text(
            slurm_conf(self.root, host, ctld_port, node_ports, self.cpus_per_node, self.memory_mb, self.cluster)
        )
        try:
            munge = self.root / "munge"
            self._spawn(
                "munged",
                ["munged", "-F", f"--key-file={key}", f"--socket={munge}/munge.socket"]
                + [f"--pid-file={munge}/munged.pid", f"--log-file={self.root}/log/munged.log"]
                + [f"--seed-file={munge}/munged.seed", "--num-threads=2"],
            )
            self._wait_for(lambda: (munge / "munge.socket").exists(), timeout, "munged to create its socket")
            self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
            for index in range(1, self.nodes + 1):
                self._spawn(f"slurmd-node{index}", ["slurmd", "-D", "-f", str(self.conf), "-N", f"node{index}"])
            self._wait_for(self._nodes_idle, timeout, f"{self.nodes} node(s) to become idle")
        except BaseException:
            self.stop()
            raise
        self._save()
        return self

    def stop(self, timeout: float = 60) -> None:
        """Cancel every job, wait for their processes to end, stop the daemons (slurmd first)."""
        if self.pids.get("slurmctld") and self._alive(self.pids["slurmctld"]):
            self.command("scancel", "--full", "--user=root", check=False)
            with contextlib.suppress(TimeoutError, RuntimeError):
                self._wait_for(self._no_jobs, timeout, "cancelled jobs to end")
        order = sorted(self.pids, key=lambda name: ("slurmd" not in name, name != "slurmctld"))
        for name in order:
            self._terminate(self.pids[name])
        self._kill_strays()
        self.pids = {}
        (self.root / STATE_FILE).unlink(missing_ok=True)

    # --- waiting on jobs ----------------------------------------------------------------------

    def job_states(self, job_ids: list[str]) -> dict[str, str]:
        """The state of each job (array tasks as `<array id>_<index>`), from the controller."""
        result = self.command("squeue", "--noheader", "--states=all", "--format=%i %T", "--jobs", ",".join(job_ids))
        states = {}
        for line in result.stdout.splitlines():
            job, state = line.split()
            states[job] = state
        return states

    def wait_for_jobs(self, job_ids: list[str], timeout: float) -> dict[str, str]:
        """Wait until every job (and array task) has ended; return their final states."""
        finished = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"}
        deadline = time.monotonic() + timeout
        while True:
            states = self.job_states(job_ids)
            if states and all(state in finished for state in states.values()):
                return states
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still not finished after {timeout:.0f}s: {states}")
            time.sleep(1.0)

    # --- internals ----------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> None:
        with open(self.root / "log" / f"{name}.out", "ab") as log:
            process = subprocess.Popen(
                args,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pids[name] = process.pid
        time.sleep(0.2)
        if process.poll() is not None:
            raise ClusterUnavailable(f"{name} exited at start ({process.returncode}); see {self.root}/log/{name}.out")

    def _nodes_idle(self) -> bool:
        result = self.command("sinfo", "--noheader", "--Node", "--format=%N %t", check=False)
        states = [line.split()[1] for line in result.stdout.splitlines() if line.strip()]
        if any(state.startswith(("inval", "drain")) for state in states):
            raise ClusterUnavailable(f"nodes did not register: {result.stdout.strip()}; see {self.root}/log")
        return len(states) == self.nodes and all(state == "idle" for state in states)

    def _no_jobs(self) -> bool:
        result = self.command("squeue", "--noheader", "--format=%i", check=False)
        return result.returncode == 0 and not result.stdout.strip()

    def _wait_for(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            for name, pid in self.pids.items():
                if not self._alive(pid):
                    raise ClusterUnavailable(f"{name} died; see {self.root}/log")
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}; see {self.root}/log")
            time.sleep(0.25)

    @staticmethod
    def _alive(pid: int) -> bool:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child and has exited
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"

    def _terminate(self, pid: int, grace: float = 10) -> None:
        if not self._alive(pid):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self._alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._alive(pid):
            os.kill(pid, signal.SIGKILL)
            while self._alive(pid):
                time.sleep(0.05)

    def _kill_strays(self) -> None:
        """End processes left behind by this cluster (slurmstepd, job processes): they carry our SLURM_CONF."""
        marker = f"SLURM_CONF={self.conf}".encode()
        spare = {os.getpid(), os.getppid()}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in spare:
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in environ:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)

    def _save(self) -> None:
        state = {"nodes": self.nodes, "cpus_per_node": self.cpus_per_node, "pids": self.pids}
        (self.root / STATE_FILE).write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, root: Path) -> LocalSlurm:
        state = json.loads((root / STATE_FILE).read_text())
        return cls(root.resolve(), nodes=state["nodes"], cpus_per_node=state["cpus_per_node"], pids=state["pids"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "check"])
    parser.add_argument("directory", type=Path, nargs="?", default=Path("/tmp/sky-distill-slurm"))
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--cpus-per-node", type=int, default=4)
    args = parser.parse_args(argv)
    if args.action == "check":
        reason = unavailable_reason()
        print(reason or "ok: a local SLURM cluster can start here")
        return 1 if reason else 0
    if args.action == "start":
        if (args.directory / STATE_FILE).exists():
            print(f"a cluster already runs from {args.directory}; stop it first", file=sys.stderr)
            return 1
        cluster = LocalSlurm(args.directory, nodes=args.nodes, cpus_per_node=args.cpus_per_node).start()
        print(f"export SLURM_CONF={cluster.conf}")
        return 0
    if not (args.directory / STATE_FILE).exists():
        print(f"no cluster runs from {args.directory}", file=sys.stderr)
        return 1
    LocalSlurm.load(args.directory).stop()
    print(f"stopped the cluster in {args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
