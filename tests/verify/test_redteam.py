"""Hostile programs against every sandbox backend that starts here: zero escapes, and the caller survives.

The escapes to the host (writes, deletes and renames outside, secrets in HOME, SSH keys, cloud
credentials and other users' files, shell and subprocess escapes, `/proc/self/root` and symlink
tricks, the network including loopback, signals to the caller) are the cases of
`redteam_cases.py`, run here as this user (root in CI: bwrap, then landlock as root without
bwrap) and by `test_sandbox_users.py` as an unprivileged user. The resource attacks below check
the host too. The fork and thread bombs run only where the process limit is active (they would
be unsafe on a shared machine otherwise) and say so when skipped.
"""

import functools
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from sky_distill.verify.sandbox import CONTAINING, SandboxLimits, SandboxUnavailable, isolation_layers, run_python
from tests.verify.redteam_cases import CASES, SAFE_UNCONFINED, run_case

pytestmark = pytest.mark.slow


def _starts(name: str) -> bool:
    try:
        return isolation_layers(name)["backend"] == name
    except SandboxUnavailable:
        return False


HERE = [name for name in CONTAINING if _starts(name)]
LAYERS = {name: isolation_layers(name)["layers"] for name in HERE}
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not HERE, reason="no containing sandbox backend starts here")]


@pytest.fixture(params=HERE or ["none"])
def backend(request) -> str:
    return request.param


def run(backend: str):
    return functools.partial(run_python, backend=backend)


def needs(backend: str, layer: str) -> None:
    active = LAYERS[backend].get(layer, {})
    if not active.get("active"):
        pytest.skip(f"sandbox layer {layer!r} is not active under {backend} here: {active.get('how')}")


def processes_with_marker(marker: str) -> list[int]:
    """PIDs on the host whose command line carries `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_no_escape_to_the_host(backend, case, tmp_path):
    tmp_path.chmod(0o755)  # the scratch directory must be reachable by a dropped uid: only the sandbox stops it
    assert run_case(case, run(backend), tmp_path) == []
    os.kill(os.getpid(), 0)
    assert run_python("print('after')", backend=backend).stdout == "after\n"  # and still able to run programs


@pytest.mark.parametrize("case", SAFE_UNCONFINED, ids=[case.__name__ for case in SAFE_UNCONFINED])
def test_each_check_catches_an_unconfined_program(case, tmp_path):
    """The checks can fail: under unsafe_process (nothing but rlimits) each of these cases finds its escape."""
    tmp_path.chmod(0o755)
    assert run_case(case, run("unsafe_process"), tmp_path) != []


def test_infinite_loop_and_sleep_end_at_the_timeout(backend):
    for program in ("while True:\n    pass", "import time\ntime.sleep(3600)"):
        started = time.monotonic()
        result = run_python(program, timeout_s=1.5, backend=backend)
        assert result.status == "timeout"
        assert time.monotonic() - started < 10


def test_fork_bomb_is_contained_and_leaves_nothing_behind(backend):
    needs(backend, "process_limit")
    needs(backend, "every_process_killed")
    marker = f"forkbomb-{uuid.uuid4().hex}"
    program = (
        "import os, sys\n"
        f"os.execv(sys.executable, [sys.executable, '-c', 'import os\\nwhile True:\\n    try: os.fork()\\n    except OSError: pass', '{marker}'])\n"
    )
    started = time.monotonic()
    result = run_python(program, timeout_s=3, backend=backend)
    assert result.status == "timeout"
    assert time.monotonic() - started < 15
    assert processes_with_marker(marker) == []


def test_thread_bomb_is_bounded(backend):
    needs(backend, "process_limit")
    program = (
        "import threading, time\n"
        "count = 0\n"
        "try:\n"
        "    while True:\n"
        "        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "        count += 1\n"
        "except Exception as error:\n"
        "    print(count, type(error).__name__)\n"
    )
    result = run_python(program, timeout_s=10, limits=SandboxLimits(max_processes=32), backend=backend)
    assert result.status == "ok", result
    count, error = result.stdout.split()
    assert int(count) < 64 and error == "RuntimeError"


def test_memory_bomb_ends_as_memory(backend):
    program = "blocks = []\nwhile True:\n    blocks.append(bytearray(50 << 20))"
    assert run_python(program, memory_mb=512, timeout_s=20, backend=backend).status == "memory"


def test_disk_filling_stops_at_the_limits(backend):
    one_file = run_python(
        "open('big', 'wb').write(b'x' * (64 << 20))", limits=SandboxLimits(max_file_mb=8), backend=backend
    )
    assert one_file.status == "runtime_error" and ("File too large" in one_file.stderr or "No space" in one_file.stderr)
    many_files = run_python(
        "import os\nfor i in range(10**6):\n    open(f'f{i}', 'wb').write(b'x' * (1 << 20))",
        limits=SandboxLimits(max_file_mb=2, disk_mb=32),
        timeout_s=30,
        backend=backend,
    )
    # bwrap: the tmpfs is full; landlock: the directory's size is measured and the program killed past it
    assert (many_files.status, "No space left" in many_files.stderr) in (("runtime_error", True), ("disk_limit", False))


def test_daemons_left_behind_are_killed_before_run_python_returns(backend):
    needs(backend, "every_process_killed")
    marker = f"daemon-{uuid.uuid4().hex}"
    program = (
        "import os, sys\n"
        "if os.fork() == 0:\n"
        "    try:\n"
        "        os.setsid()\n"
        "    except OSError:\n"
        "        pass\n"
        "    if os.fork() == 0:\n"
        "        signal_proof = __import__('signal')\n"
        "        signal_proof.signal(signal_proof.SIGTERM, signal_proof.SIG_IGN)\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(3600)', '{marker}'])\n"
        "    os._exit(0)\n"
        "import time\n"
        "time.sleep(0.5)\n"
        "print('parent done')\n"
    )
    result = run_python(program, timeout_s=10, backend=backend)
    assert result.status == "ok" and result.stdout == "parent done\n"
    assert processes_with_marker(marker) == []


def test_huge_output_is_capped_and_the_caller_keeps_its_memory(backend):
    limits = SandboxLimits(max_output_bytes=1 << 20)
    program = "import sys\nwhile True:\n    sys.{}.write('x' * 65536)"
    result = run_python(program.format("stdout"), limits=limits, timeout_s=20, backend=backend)
    assert result.status == "output_limit" and len(result.stdout) <= 1 << 20
    errors = run_python(program.format("stderr"), limits=limits, timeout_s=20, backend=backend)
    assert errors.status == "output_limit" and len(errors.stderr) <= 1 << 20


def test_segfault_recursion_and_fd_exhaustion_are_bounded(backend):
    segfault = run_python("import ctypes\nctypes.string_at(0)", backend=backend)
    assert segfault.status == "runtime_error" and segfault.signal == "SIGSEGV"
    recursion = run_python(
        "import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1)\nf(0)", timeout_s=3, backend=backend
    )
    assert recursion.status in ("runtime_error", "memory", "timeout")  # bounded, whichever limit ends it
    files = run_python(
        "handles = [open('/dev/null') for _ in range(10**5)]", limits=SandboxLimits(max_open_files=32), backend=backend
    )
    assert files.status == "runtime_error" and "Too many open files" in files.stderr


def test_no_privileges_to_regain(backend):
    needs(backend, "no_privileges")
    program = (
        "import os\n"
        "for call in (lambda: os.setuid(0) if os.getuid() else os.setuid(12345) or os.setuid(0),\n"
        "             lambda: os.chroot('/'), lambda: open('/etc/shadow').read()):\n"
        "    try:\n"
        "        call()\n"
        "        print('allowed')\n"
        "    except OSError as error:\n"
        "        print('denied', type(error).__name__)\n"
    )
    result = run_python(program, backend=backend)
    assert result.status == "ok" and "allowed" not in result.stdout, result.stdout


def test_landlock_runs_nothing_but_the_interpreter_and_no_new_namespaces():
    if "landlock" not in HERE:
        pytest.skip("the landlock backend does not start here")
    program = (
        "import ctypes, os, subprocess, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(subprocess.run([sys.executable, '-c', 'print(5)'], capture_output=True, text=True).stdout.strip())\n"
        "for argv in (['/bin/sh', '-c', 'true'], ['/usr/bin/env'], ['/bin/true']):\n"
        "    try:\n"
        "        subprocess.run(argv)\n"
        "        print('ran', argv[0])\n"
        "    except OSError as error:\n"
        "        print('refused', argv[0], type(error).__name__)\n"
        "for flag in (0x10000000, 0x20000000, 0x40000000, 0x00020000):  # user, pid, net, mount namespaces\n"
        "    print('unshare', flag, libc.unshare(flag), ctypes.get_errno())\n"
        "print('setsid', libc.setsid(), 'setpgid', libc.setpgid(0, 0))\n"
    )
    result = run_python(program, backend="landlock")
    lines = result.stdout.splitlines()
    assert lines[0] == "5", result  # the interpreter itself still runs
    assert [line.split()[0] for line in lines[1:4]] == ["refused"] * 3, result.stdout
    assert all(line.split()[2] == "-1" for line in lines[4:8]), result.stdout
    assert lines[8] == "setsid -1 setpgid -1", result.stdout


def test_signals_sent_to_the_sandbox_do_not_reach_the_caller(backend):
    """A program that ignores SIGTERM is still ended by the timeout (SIGKILL from outside)."""
    program = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(3600)"
    result = run_python(program, timeout_s=1.5, backend=backend)
    assert result.status == "timeout"
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
