"""Preemption: stop at a step boundary, checkpoint, and exit with the requeue status.

The contract with the SLURM scripts: on SIGUSR1 or SIGTERM every rank finishes its current
optimizer step, a checkpoint of that step is saved, and the process exits with status
`REQUEUE_EXIT_CODE` (85); `sky-distill train` (the launcher) exits 85 too. Run again, it
resumes from that checkpoint.

How the signal reaches every rank: SLURM signals every process of the job step; a signal
sent to the launcher alone is forwarded to the ranks and also leaves a stop file in the output
directory (a rank that was still starting up, or a rank on another node, sees it at its next
step boundary). torchrun is started ignoring both signals, so it does not tear the ranks down
while they save. At each step boundary the ranks agree (one all-reduce) whether any of them
was asked to stop, so all stop after the same step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REQUEUE_EXIT_CODE = 85
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
STOP_FILE = "STOP_REQUESTED"
PREEMPTED_FILE = "PREEMPTED.json"


class TrainingPreempted(SystemExit):
    """Training stopped on request after saving a checkpoint; exit with the requeue status."""

    def __init__(self, step: int):
        self.step = step
        super().__init__(REQUEUE_EXIT_CODE)


class StopRequest:
    """Remembers a stop signal (or the stop file) until the loop reaches a step boundary."""

    def __init__(self, output_dir: str | Path):
        self.stop_file = Path(output_dir) / STOP_FILE
        self.signal_name: str | None = None

    def install(self) -> StopRequest:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
            log.warning("received %s: stopping after the current optimizer step", self.signal_name)

    def requested(self) -> bool:
        if self.signal_name is None and self.stop_file.exists():
            self.signal_name = "stop file"
        return self.signal_name is not None


def ignore_stop_signals() -> None:
    """For torchrun's process (a `preexec_fn`): let the ranks, not torchrun, act on these signals."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def child_processes() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, parents before children."""
    tree = child_processes()
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop(0)
        for child in tree.get(current, []):
            found.append(child)
            frontier.append(child)
    return found


def signal_processes(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
