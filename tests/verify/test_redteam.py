"""Hostile programs against the sandbox: zero escapes, and the caller survives.

Each program attacks one layer; the assertions check the host, not only what the program says.
The fork and thread bombs run only where the process limit is active (they would be unsafe on
a shared machine otherwise) and say so when skipped.
"""

import contextlib
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from sky_distill.verify.sandbox import SandboxLimits, isolation_layers, run_python

pytestmark = pytest.mark.slow

LAYERS = isolation_layers()["layers"]


def active(layer: str) -> bool:
    return LAYERS.get(layer, {}).get("active", False)


def needs(layer: str):
    return pytest.mark.skipif(
        not active(layer), reason=f"sandbox layer {layer!r} is not active here: {LAYERS.get(layer)}"
    )


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


def test_infinite_loop_and_sleep_end_at_the_timeout():
    for program in ("while True:\n    pass", "import time\ntime.sleep(3600)"):
        started = time.monotonic()
        result = run_python(program, timeout_s=1.5)
        assert result.status == "timeout"
        assert time.monotonic() - started < 10


def test_cpu_time_limit_holds_even_if_the_wall_clock_is_generous():
    result = run_python("while True:\n    pass", limits=SandboxLimits(timeout_s=2), timeout_s=2)
    assert result.status == "timeout"


@needs("process_limit")
@needs("pid_namespace")
def test_fork_bomb_is_contained_and_leaves_nothing_behind():
    marker = f"forkbomb-{uuid.uuid4().hex}"
    program = (
        "import os, sys\n"
        f"os.execv(sys.executable, [sys.executable, '-c', 'import os\\nwhile True:\\n    try: os.fork()\\n    except OSError: pass', '{marker}'])\n"
    )
    started = time.monotonic()
    result = run_python(program, timeout_s=3)
    assert result.status == "timeout"
    assert time.monotonic() - started < 15
    assert processes_with_marker(marker) == []


@needs("process_limit")
def test_thread_bomb_is_bounded():
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
    result = run_python(program, timeout_s=10, limits=SandboxLimits(max_processes=32))
    assert result.status == "ok", result
    count, error = result.stdout.split()
    assert int(count) < 64 and error == "RuntimeError"


def test_memory_bomb_ends_as_memory():
    result = run_python("blocks = []\nwhile True:\n    blocks.append(bytearray(50 << 20))", memory_mb=512, timeout_s=20)
    assert result.status == "memory"


def test_disk_filling_stops_at_the_limits(tmp_path):
    one_file = run_python("open('big', 'wb').write(b'x' * (64 << 20))", limits=SandboxLimits(max_file_mb=8))
    assert one_file.status == "runtime_error" and ("File too large" in one_file.stderr or "No space" in one_file.stderr)
    many_files = run_python(
        "import os\nfor i in range(10**6):\n    open(f'f{i}', 'wb').write(b'x' * (1 << 20))",
        limits=SandboxLimits(max_file_mb=2, disk_mb=32),
        timeout_s=30,
    )
    assert many_files.status == "runtime_error" and "No space left" in many_files.stderr


@needs("read_only_filesystem")
def test_writes_and_deletes_outside_the_sandbox_do_not_happen(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target = tmp_path / "planted.txt"
    program = (
        "import os, shutil\n"
        f"for action in (lambda: open({str(target)!r}, 'w').write('pwned'), lambda: os.remove({str(victim)!r}),\n"
        f"               lambda: shutil.rmtree({str(tmp_path)!r}), lambda: open('/usr/pwned', 'w'),\n"
        "               lambda: open('/etc/pwned', 'w'), lambda: os.remove('/usr/bin/env')):\n"
        "    try:\n"
        "        action()\n"
        "        print('done')\n"
        "    except OSError as error:\n"
        "        print(type(error).__name__)\n"
    )
    result = run_python(program)
    assert result.status == "ok" and "done" not in result.stdout, result.stdout
    assert victim.read_text() == "keep me" and not target.exists()
    assert not Path("/usr/pwned").exists() and not Path("/etc/pwned").exists() and Path("/usr/bin/env").exists()


@needs("no_network")
def test_no_network_not_even_the_hosts_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        with contextlib.suppress(OSError):
            accepted.append(server.accept())

    listener = threading.Thread(target=accept)
    listener.start()
    program = (
        "import socket\n"
        f"for host, port in (('127.0.0.1', {port}), ('1.1.1.1', 53), ('pypi.org', 443)):\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=2).close()\n"
        "        print('connected', host)\n"
        "    except OSError as error:\n"
        "        print('refused', host, type(error).__name__)\n"
    )
    try:
        result = run_python(program, timeout_s=15)
    finally:
        listener.join()
        server.close()
    assert result.status == "ok" and "connected" not in result.stdout, result.stdout
    assert accepted == []


def test_environment_secrets_and_home_files_are_out_of_reach(monkeypatch, tmp_path):
    secret = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("SKY_DISTILL_API_KEY", secret)
    secret_file = tmp_path / "credentials"
    secret_file.write_text(secret)
    program = (
        "import os, glob\n"
        "print(dict(os.environ))\n"
        "for path in ['/proc/1/environ', '/proc/self/environ', os.path.expanduser('~/.bashrc'),\n"
        f"             {str(secret_file)!r}, {str(Path.home() / '.ssh' / 'id_rsa')!r}]:\n"
        "    try:\n"
        "        print(open(path, 'rb').read())\n"
        "    except OSError as error:\n"
        "        print(type(error).__name__)\n"
        f"print(glob.glob({str(Path.home())!r} + '/*'))\n"
    )
    result = run_python(program)
    assert result.status == "ok"
    assert secret not in result.stdout
    if active("read_only_filesystem"):
        assert str(secret_file) not in result.stdout


@needs("caller_unreachable")
def test_killing_the_parent_fails_and_the_caller_survives():
    me, group = os.getpid(), os.getpgid(0)
    program = (
        "import os, signal\n"
        f"for target in (os.getppid(), {me}, 1):\n"
        "    try:\n"
        "        os.kill(target, signal.SIGKILL)\n"
        "        print('killed', target)\n"
        "    except OSError as error:\n"
        "        print('failed', target, type(error).__name__)\n"
        "for call in (lambda: os.killpg(%d, signal.SIGKILL), lambda: os.kill(-1, signal.SIGKILL)):\n"
        "    try:\n"
        "        call()\n"
        "        print('killed a group')\n"
        "    except OSError as error:\n"
        "        print('failed', type(error).__name__)\n" % group
    )
    result = run_python(program)
    assert "killed" not in result.stdout, result.stdout
    os.kill(me, 0)  # still here
    assert run_python("print('after')").stdout == "after\n"  # and still able to run programs


@needs("pid_namespace")
def test_daemons_left_behind_are_killed_before_run_python_returns():
    marker = f"daemon-{uuid.uuid4().hex}"
    program = (
        "import os, sys\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        signal_proof = __import__('signal')\n"
        "        signal_proof.signal(signal_proof.SIGTERM, signal_proof.SIG_IGN)\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(3600)', '{marker}'])\n"
        "    os._exit(0)\n"
        "import time\n"
        "time.sleep(0.5)\n"
        "print('parent done')\n"
    )
    result = run_python(program, timeout_s=10)
    assert result.status == "ok" and result.stdout == "parent done\n"
    assert processes_with_marker(marker) == []


def test_huge_output_is_capped_and_the_caller_keeps_its_memory():
    limits = SandboxLimits(max_output_bytes=1 << 20)
    result = run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", limits=limits, timeout_s=20)
    assert result.status == "output_limit" and len(result.stdout) <= 1 << 20
    errors = run_python("import sys\nwhile True:\n    sys.stderr.write('e' * 65536)", limits=limits, timeout_s=20)
    assert errors.status == "output_limit" and len(errors.stderr) <= 1 << 20


def test_segfault_is_a_runtime_error():
    result = run_python("import ctypes\nctypes.string_at(0)")
    assert result.status == "runtime_error" and result.signal == "SIGSEGV"


def test_recursion_bomb_and_fd_exhaustion_are_bounded():
    recursion = run_python(
        "import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1)\nf(0)", timeout_s=3
    )
    assert recursion.status in ("runtime_error", "memory", "timeout")  # bounded, whichever limit ends it
    files = run_python("handles = [open('/dev/null') for _ in range(10**5)]", limits=SandboxLimits(max_open_files=32))
    assert files.status == "runtime_error" and "Too many open files" in files.stderr


@needs("no_privileges")
def test_no_privileges_to_regain():
    program = (
        "import os\n"
        "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
        "for call in (lambda: os.setuid(0), lambda: os.chroot('/'), lambda: open('/etc/shadow').read()):\n"
        "    try:\n"
        "        call()\n"
        "        print('allowed')\n"
        "    except OSError as error:\n"
        "        print('denied', type(error).__name__)\n"
    )
    result = run_python(program)
    lines = result.stdout.split()
    assert result.status == "ok" and int(lines[0], 16) == 0 and "allowed" not in result.stdout, result.stdout


def test_signals_sent_to_the_sandbox_do_not_reach_the_caller():
    """A program that ignores SIGTERM is still ended by the timeout (SIGKILL from outside)."""
    program = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(3600)"
    result = run_python(program, timeout_s=1.5)
    assert result.status == "timeout"
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
