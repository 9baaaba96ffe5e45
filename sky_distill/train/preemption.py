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

Bounded: a rank whose step cannot finish (a peer died inside a collective) ends itself
`SKY_DISTILL_STOP_GRACE_S` seconds (default 600; 0: no limit) after the first stop signal. Orphans: torchrun
and every rank ask the kernel for SIGKILL when their parent dies (`die_with_parent`), so a
launcher killed outright takes its ranks with it instead of leaving them holding devices.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REQUEUE_EXIT_CODE = 85
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
STOP_FILE = "STOP_REQUESTED"
PREEMPTED_FILE = "PREEMPTED.json"
STOP_GRACE_ENV = "SKY_DISTILL_STOP_GRACE_S"
DEFAULT_STOP_GRACE_S = 600.0  # to finish the step and save its checkpoint after a stop signal
STOP_TIMEOUT_EXIT_CODE = 124  # the step did not finish within the grace period; no checkpoint
PR_SET_PDEATHSIG = 1  # linux/prctl.h


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
            grace = stop_grace_s()
            log.warning(
                "received %s: stopping after the current optimizer step (ending in %.0f s if it cannot finish)",
                self.signal_name,
                grace,
            )
            if grace > 0:  # 0 waits for the step however long it takes
                timer = threading.Timer(grace, _give_up, args=(self.signal_name, grace))
                timer.daemon = True
                timer.start()

    def requested(self) -> bool:
        if self.signal_name is None and self.stop_file.exists():
            self.signal_name = "stop file"
        return self.signal_name is not None


def stop_grace_s() -> float:
    return float(os.environ.get(STOP_GRACE_ENV) or DEFAULT_STOP_GRACE_S)


def _give_up(signal_name: str, grace: float) -> None:
    """Runs on a timer thread: the main thread is stuck in a step (often a collective with a dead peer)."""
    log.error("%s %.0f s ago and the step has not finished: exiting without a checkpoint", signal_name, grace)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    sys.stderr.flush()
    os._exit(STOP_TIMEOUT_EXIT_CODE)


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask Linux to send `sig` to this process when its parent dies; exit now if it already has.

    Used in torchrun's process (a `preexec_fn`) and in every rank. False where prctl is unavailable.
    """
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if parent == 1 or os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
    return True


def ignore_stop_signals() -> None:
    """For torchrun's process (a `preexec_fn`): let the ranks, not torchrun, act on these signals;
    and die with the launcher, so that its ranks (which die with torchrun) do too."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    die_with_parent()


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
