"""The sandbox on ordinary programs: statuses, input and output, limits, and the active layers."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from sky_distill.verify.sandbox import SandboxLimits, isolation_layers, resolve_backend, run_python

pytestmark = pytest.mark.slow


def test_a_program_reads_stdin_and_prints():
    result = run_python("import sys\nprint(sum(map(int, sys.stdin.read().split())))", stdin="1 2 3\n")
    assert (result.status, result.stdout, result.completed) == ("ok", "6\n", True)
    assert result.elapsed_s > 0
    assert run_python("print(open(0).read().upper())", stdin="abc").stdout == "ABC\n"


def test_statuses_of_programs_that_fail():
    error = run_python("1 / 0")
    assert (
        error.status == "runtime_error" and "ZeroDivisionError" in error.detail and "ZeroDivisionError" in error.stderr
    )
    assert run_python("def f(:").status == "runtime_error"
    exit_code = run_python("import sys; sys.exit(3)")
    assert (exit_code.status, exit_code.exit_code) == ("runtime_error", 3)
    assert run_python("while True: pass", timeout_s=1.5).status == "timeout"
    assert run_python("x = bytearray(3 << 30)", memory_mb=512).status == "memory"
    big = run_python("while True: print('x' * 1000)", limits=SandboxLimits(max_output_bytes=1 << 16))
    assert big.status == "output_limit" and len(big.stdout) <= 1 << 16


def test_an_early_exit_is_not_completion():
    early = run_python("print(1)\nimport sys\nsys.exit(0)\nprint(2)")
    assert (early.status, early.stdout, early.completed) == ("ok", "1\n", False)
    assert run_python("raise SystemExit").completed is False


def test_the_program_runs_in_a_fresh_directory_with_a_scrubbed_environment(monkeypatch):
    monkeypatch.setenv("SKY_DISTILL_TEST_SECRET", "hunter2")
    result = run_python(
        "import os\nprint(sorted(os.environ))\nprint(os.listdir('.'))\nopen('scratch.txt', 'w').write('x')\nprint(os.listdir('.'))"
    )
    assert result.status == "ok"
    assert "SKY_DISTILL_TEST_SECRET" not in result.stdout and "hunter2" not in result.stdout
    names = result.stdout.splitlines()
    assert "scratch.txt" not in names[1] and "scratch.txt" in names[2]
    again = run_python("import os\nprint(os.listdir('.'))")  # nothing carries over between runs
    assert "scratch.txt" not in again.stdout


def test_isolation_layers_describe_this_machine():
    report = isolation_layers()
    assert report["backend"] in ("bwrap", "unshare", "none")
    layers = report["layers"]
    for layer in ("process_group", "rlimits", "wall_timeout", "output_cap", "scrubbed_environment", "fresh_directory"):
        assert layers[layer]["active"], layer
    if shutil.which("bwrap"):
        assert report["backend"] == "bwrap"
        assert all(layer["active"] for layer in layers.values()), layers
    assert resolve_backend("none").name == "none"
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("docker")


@pytest.mark.parametrize("backend", ["none", "unshare"])
def test_the_fallback_backends_still_run_programs(backend):
    if backend == "unshare" and (os.geteuid() != 0 or not shutil.which("unshare")):
        pytest.skip("the unshare backend needs root and util-linux unshare")
    result = run_python("print(7 * 6)", backend=backend)
    assert (result.status, result.stdout, result.backend) == ("ok", "42\n", backend)
    assert run_python("while True: pass", timeout_s=1, backend=backend).status == "timeout"
    marker = f"fallback-daemon-{os.getpid()}-{backend}"
    daemon = (
        "import os, sys\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        f"    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(600)', '{marker}'])\n"
        "print('parent done')\n"
    )
    result = run_python(daemon, timeout_s=10, backend=backend)
    assert (result.status, result.stdout) == ("ok", "parent done\n")
    left = [(pid, line) for pid, line in _command_lines() if marker.encode() in line]
    assert left == []


def _command_lines() -> list[tuple[int, bytes]]:
    lines = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                lines.append((int(entry), Path(f"/proc/{entry}/cmdline").read_bytes()))
            except OSError:
                continue
    return lines


SYSTEM_PYTHON = Path("/usr/bin/python3")


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("bwrap"), reason="needs root (to become another user) and bwrap"
)
@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="needs a system Python an unprivileged user can run")
def test_an_unprivileged_user_gets_bwrap_with_a_user_namespace():
    """What a researcher on a cluster gets: bwrap as a normal user, limits inside a user namespace."""
    import sky_distill.verify.sandbox as sandbox

    directory = Path(tempfile.mkdtemp(prefix="sky-sandbox-user-test-", dir="/tmp"))
    try:
        directory.chmod(0o755)
        for source in (Path(sandbox.__file__), Path(sandbox.__file__).with_name("sandbox_entry.py")):
            shutil.copy(source, directory / source.name)  # the module needs only the standard library
        script = directory / "as_user.py"
        script.write_text(
            "import json\n"
            "from sandbox import isolation_layers, run_python\n"
            "layers = isolation_layers()\n"
            "result = run_python('import os; print(os.getuid())')\n"
            "bomb = run_python('import os\\nwhile True:\\n    try: os.fork()\\n    except OSError: pass', timeout_s=2)\n"
            "print(json.dumps({'layers': layers, 'status': result.status, 'stdout': result.stdout, 'bomb': bomb.status}))\n"
        )
        for path in directory.iterdir():
            path.chmod(0o644)

        def become_nobody():
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)

        completed = subprocess.run(
            [str(SYSTEM_PYTHON), str(script)],
            preexec_fn=become_nobody,
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(directory)},
            cwd=directory,
            timeout=120,
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    if report["layers"]["backend"] != "bwrap":
        pytest.skip(f"bwrap does not work for an unprivileged user here: {report['layers']}")
    assert report["status"] == "ok" and report["stdout"].strip() == "65534", report
    active = [name for name, layer in report["layers"]["layers"].items() if layer["active"]]
    assert {"process_limit", "no_network", "pid_namespace", "read_only_filesystem"} <= set(active)
    assert report["bomb"] == "timeout"  # held by the process limit until the wall clock ran out
