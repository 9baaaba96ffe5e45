"""The stop request: a real signal (or the stop file) is remembered until a step boundary."""

import os
import signal
import subprocess
import sys
import time

from sky_distill.train.preemption import REQUEUE_EXIT_CODE, STOP_FILE, StopRequest, TrainingPreempted, descendants


def test_requeue_exit_code_is_85():
    assert REQUEUE_EXIT_CODE == 85
    assert TrainingPreempted(7).code == 85 and TrainingPreempted(7).step == 7


def test_a_real_signal_is_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("SKY_DISTILL_STOP_GRACE_S", "0")  # no timer that would end this test process
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        for sig in (signal.SIGUSR1, signal.SIGTERM):
            request = StopRequest(tmp_path).install()
            assert not request.requested()
            os.kill(os.getpid(), sig)
            assert request.requested() and request.signal_name == sig.name
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_the_stop_file_is_a_request(tmp_path):
    request = StopRequest(tmp_path)
    assert not request.requested()
    (tmp_path / STOP_FILE).touch()
    assert request.requested() and request.signal_name == "stop file"


def test_descendants_finds_the_process_tree():
    script = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 10
        while time.time() < deadline and not descendants(parent.pid):
            time.sleep(0.05)
        found = descendants(parent.pid)
        assert len(found) == 1
    finally:
        for pid in [*descendants(parent.pid), parent.pid]:
            os.kill(pid, signal.SIGKILL)
        parent.wait()
