"""Ranks do not outlive their launcher, and a stop signal ends a rank whose step cannot finish.

Seen: the pipeline killed with SIGKILL during training left both ranks (each in its own session)
re-parented to init for over 5 minutes, ignoring SIGTERM while waiting for a step that never came.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

RANK = textwrap.dedent(
    """
    import os, sys, time
    from sky_distill.train.launch import run_rank  # noqa: F401  (the rank's own module)
    from sky_distill.train.preemption import StopRequest, die_with_parent
    out = sys.argv[1]
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        die_with_parent()  # what run_rank does first
    StopRequest(out).install()
    open(os.path.join(out, f"rank{os.environ.get('RANK', 0)}.pid"), "w").write(str(os.getpid()))
    while True:  # a step that never finishes (a peer died inside a collective)
        time.sleep(0.2)
    """
)

LAUNCHER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from sky_distill.train.distributed import free_port
    from sky_distill.train.launch import _run_torchrun, rendezvous_args
    out = Path(sys.argv[1])
    env = {**os.environ, "MASTER_PORT": str(free_port()), "TORCHELASTIC_SIGNALS_TO_HANDLE": "SIGINT,SIGHUP,SIGQUIT"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", *rendezvous_args(1, env),
               str(out / "rank.py"), str(out)]
    _run_torchrun(command, env, out)
    """
)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_ranks_die_when_their_launcher_is_killed_outright(tmp_path):
    (tmp_path / "rank.py").write_text(RANK)
    (tmp_path / "launcher.py").write_text(LAUNCHER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(
        [sys.executable, str(tmp_path / "launcher.py"), str(tmp_path)], env=env, start_new_session=True
    )
    pid_files = [tmp_path / "rank0.pid", tmp_path / "rank1.pid"]
    try:
        assert wait_for(lambda: all(f.exists() and f.read_text() for f in pid_files), 60), "the ranks did not start"
        ranks = [int(f.read_text()) for f in pid_files]
        time.sleep(0.5)
        assert all(alive(pid) for pid in ranks)
        os.killpg(launcher.pid, signal.SIGKILL)  # the launcher's whole process group, as in the report
        launcher.wait()
        assert wait_for(lambda: not any(alive(pid) for pid in ranks), 15), "orphaned ranks kept running"
    finally:
        with_pids = [int(f.read_text()) for f in pid_files if f.exists() and f.read_text()]
        for pid in with_pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)


def test_a_stop_signal_ends_a_rank_whose_step_cannot_finish_after_the_grace_period(tmp_path):
    sig = signal.SIGTERM  # SIGUSR1 takes the same path
    (tmp_path / "rank.py").write_text(RANK)
    env = {**os.environ, "SKY_DISTILL_STOP_GRACE_S": "1.5", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("TORCHELASTIC_RUN_ID", None)
    rank = subprocess.Popen(
        [sys.executable, str(tmp_path / "rank.py"), str(tmp_path)], env=env, stderr=subprocess.PIPE, text=True
    )
    assert wait_for(lambda: (tmp_path / "rank0.pid").exists(), 30)
    time.sleep(0.2)
    sent = time.monotonic()
    rank.send_signal(sig)
    _, stderr = rank.communicate(timeout=30)
    took = time.monotonic() - sent
    assert rank.returncode == 124 and 1.4 < took < 10
    assert "has not finished: exiting without a checkpoint" in stderr
