"""The sandbox on ordinary programs: statuses, input and output, limits, and the active layers."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sky_distill.verify.sandbox import (
    SandboxLimits,
    SandboxUnavailable,
    isolation_layers,
    layers_table,
    require_containment,
    resolve_backend,
    run_python,
)

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


CONTAINED = ("read_only_filesystem", "no_network", "every_process_killed", "caller_unreachable", "no_privileges")


def test_isolation_layers_describe_this_machine():
    report = isolation_layers()
    if report["backend"] is None:  # fail closed: the reason names both backends and the way out
        assert "bwrap" in report["error"] and "landlock" in report["error"] and "unsafe_process" in report["error"]
        pytest.skip(report["error"])
    assert report["backend"] in ("bwrap", "landlock") and report["contained"]
    layers = report["layers"]
    for layer in ("process_group", "rlimits", "wall_timeout", "output_cap", "scrubbed_environment", "fresh_directory"):
        assert layers[layer]["active"], layer
    assert all(layers[layer]["active"] for layer in CONTAINED), layers
    if shutil.which("bwrap"):
        assert report["backend"] == "bwrap"
    if report["kernel"]["landlock_abi"] >= 6 and not report["kernel"]["problems"]:
        landlock = isolation_layers("landlock")["layers"]
        assert all(layer["active"] for name, layer in landlock.items() if name != "process_limit"), landlock
    unsafe = isolation_layers("unsafe_process")
    assert not unsafe["contained"] and not unsafe["layers"]["read_only_filesystem"]["active"]
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("docker")
    table = layers_table()
    assert "| read only filesystem |" in table and "unsafe_process" in table


def test_without_bwrap_auto_takes_landlock(monkeypatch):
    if isolation_layers("landlock")["backend"] != "landlock":
        pytest.skip("the landlock backend does not start here")
    monkeypatch.setenv("PATH", "/nonexistent")  # what a pip-only install has: no bwrap
    resolve_backend.cache_clear()
    try:
        assert resolve_backend("auto").name == "landlock"
        assert run_python("print(6 * 7)").backend == "landlock"
    finally:
        resolve_backend.cache_clear()


REFUSAL = """
import errno, json, os, pyseccomp
from pathlib import Path
rules = pyseccomp.SyscallFilter(pyseccomp.ALLOW)  # a kernel without Landlock: landlock_create_ruleset is ENOSYS
rules.add_rule(pyseccomp.ERRNO(errno.ENOSYS), 444)
rules.load()
os.environ["PATH"] = "/nonexistent"  # and no bwrap
from sky_distill.verify.sandbox import SandboxUnavailable, isolation_layers, require_containment, run_python
marker = Path({marker!r})
outcome = {{}}
try:
    run_python(f"open({{str(marker)!r}}, 'w').write('ran')")
    outcome["auto"] = "ran"
except SandboxUnavailable as error:
    outcome["auto"] = str(error)
try:
    require_containment("auto")
except SandboxUnavailable as error:
    outcome["stage"] = str(error)
outcome["marker_after_refusal"] = marker.exists()
outcome["unsafe"] = run_python("print(6 * 7)", backend="unsafe_process").stdout
outcome["unsafe_contained"] = isolation_layers("unsafe_process")["contained"]
print(json.dumps(outcome))
"""


def test_without_bwrap_or_landlock_code_is_refused_unless_the_unsafe_backend_is_named(tmp_path):
    """Fail closed, on a real kernel made to answer like one without Landlock (seccomp: ENOSYS)."""
    pytest.importorskip("pyseccomp")
    marker = tmp_path / "ran.txt"
    root = Path(__file__).resolve().parents[2]
    completed = subprocess.run(
        [sys.executable, "-c", REFUSAL.format(marker=str(marker))],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])},
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    for message in (outcome["auto"], outcome["stage"]):
        assert message.startswith("code verification refused") and "\n" not in message
        assert "apt-get install bubblewrap" in message and "pip install landlockpy pyseccomp" in message
        assert "verify.sandbox.backend=unsafe_process" in message
    assert outcome["marker_after_refusal"] is False  # refused before running
    assert outcome["unsafe"] == "42\n" and outcome["unsafe_contained"] is False  # named: it runs, and says so


def test_require_containment_returns_what_the_reports_record():
    try:
        report = require_containment("auto")
    except SandboxUnavailable as error:
        pytest.skip(str(error))
    assert report["contained"] and report["backend"] in ("bwrap", "landlock")
    assert require_containment("unsafe_process")["contained"] is False


@pytest.mark.parametrize("backend", ["unsafe_process", "unshare"])
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
