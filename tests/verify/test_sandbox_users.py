"""The sandbox as an unprivileged user without bubblewrap (a cluster login node): the red-team cases as a new user.

Run as root, the test creates a user (`useradd`, removed after) and runs `redteam_cases.py`
through `run_python` as that user, for every backend that starts for it, and for `auto` with
bwrap hidden from PATH. That user must be able to run the interpreter: CI's venv usually lives
under a 0700 HOME (`/root/.pyenv`), and opening HOME to others would weaken the host for a
test, so the test uses the venv's interpreter only when other users can already reach it, and
otherwise the system's `/usr/bin/python3` with a world-readable copy of the sandbox modules and
their two pure-Python dependencies (the sandbox needs nothing else); with neither it skips and
says why. As a non-root user, `test_redteam.py` already runs in this configuration.
"""

import importlib.util
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

import sky_distill.verify.sandbox as sandbox

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
MODULES = ["sky_distill/errors.py", *(f"sky_distill/verify/{name}" for name in sandbox.MODULE_FILES)]

DRIVER = """
import functools, json, os, sys, tempfile, uuid
from pathlib import Path
from sky_distill.verify.sandbox import CONTAINING, isolation_layers, resolve_backend, run_python
from redteam_cases import CASES, run_case

def marked(marker):
    found = []
    for entry in os.listdir('/proc'):
        try:
            found += [entry] if entry.isdigit() and marker.encode() in Path(f'/proc/{entry}/cmdline').read_bytes() else []
        except OSError:
            pass
    return found

report = {}
scratch = Path(tempfile.mkdtemp(prefix='redteam-'))
for name in [*CONTAINING, 'auto']:
    if name == 'auto':
        os.environ['PATH'] = '/nonexistent'  # no bwrap: what a pip-only install on a cluster node has
        resolve_backend.cache_clear()
    layers = isolation_layers(name)
    if not layers['backend']:
        report[name] = {'error': layers['error']}
        continue
    run = functools.partial(run_python, backend=name)
    marker = f'forkbomb-{uuid.uuid4().hex}'
    bomb = run("import os, sys\\nos.execv(sys.executable, [sys.executable, '-c', "
               "'import os\\\\nwhile True:\\\\n    try: os.fork()\\\\n    except OSError: pass', "
               f"'{marker}'])", timeout_s=3)
    report[name] = {
        'backend': layers['backend'],
        'landlock_abi': layers['kernel']['landlock_abi'],
        'layers': {key: value['active'] for key, value in layers['layers'].items()},
        'uid': run('import os; print(os.getuid())').stdout.strip(),
        'escapes': {case.__name__: run_case(case, run, scratch) for case in CASES},
        'fork_bomb': bomb.status,
        'fork_bomb_left': marked(marker),
    }
print(json.dumps(report))
"""


def interpreter_for_others() -> tuple[str | None, str]:
    """An interpreter another user can run, and why it was chosen (or why there is none)."""
    python = os.path.realpath(sys.executable)
    if all(sandbox._readable_by_others(path) for path in (python, os.path.realpath(sys.base_prefix))):
        return python, "this environment's interpreter"
    system = Path("/usr/bin/python3")
    if system.exists() and sandbox._readable_by_others(str(system.resolve())):
        return str(system), f"{python} is not reachable by other users; the system's Python"
    return None, f"{python} is not reachable by other users and there is no system Python"


def world_readable_copy(directory: Path) -> None:
    """The sandbox modules, the red-team cases and landlockpy/pyseccomp, importable by any user."""
    for name in MODULES:
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, target)
    for package in ("sky_distill", "sky_distill/verify"):
        (directory / package / "__init__.py").write_text("")  # the real package __init__ pulls in the config stack
    shutil.copy(Path(__file__).with_name("redteam_cases.py"), directory / "redteam_cases.py")
    for module in ("landlockpy", "pyseccomp"):
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            shutil.copytree(origin.parent, directory / module, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(origin, directory / origin.name)
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture
def new_user():
    if os.geteuid() != 0:
        pytest.skip("already unprivileged: test_redteam.py runs the cases as this user")
    if not shutil.which("useradd"):
        pytest.skip("needs useradd to create an unprivileged user")
    name = f"skyrt{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", "--remove", name], capture_output=True)


def test_an_unprivileged_user_without_bwrap_is_contained(new_user):
    python, why = interpreter_for_others()
    if python is None:
        pytest.skip(why)
    directory = Path(tempfile.mkdtemp(prefix="sky-sandbox-user-test-"))
    try:
        directory.chmod(0o755)
        world_readable_copy(directory)

        def become_user():
            os.setgroups([])
            os.setgid(new_user.pw_gid)
            os.setuid(new_user.pw_uid)

        completed = subprocess.run(
            [python, "-I", "-c", f"import sys; sys.path.insert(0, {str(directory)!r}); exec(sys.stdin.read())"],
            input=DRIVER,
            preexec_fn=become_user,
            capture_output=True,
            text=True,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": new_user.pw_dir, "USER": new_user.pw_name},
            cwd=directory,
            timeout=300,
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert completed.returncode == 0, f"({why}) {completed.stderr[-3000:]}"
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    started = {name: result for name, result in report.items() if "error" not in result}
    assert "landlock" in started or "auto" not in started, report  # auto without bwrap is landlock or refuses
    for name, result in started.items():
        assert result["uid"] == str(new_user.pw_uid) or result["backend"] == "bwrap", (name, result)
        assert {case: escapes for case, escapes in result["escapes"].items() if escapes} == {}, (name, result)
        assert result["fork_bomb"] == "timeout" and result["fork_bomb_left"] == [], (name, result)
        assert all(result["layers"][layer] for layer in ("read_only_filesystem", "no_network", "process_limit"))
        if result["backend"] == "landlock" and result["landlock_abi"] >= 6:  # signal scope: every layer
            assert all(result["layers"].values()), (name, result["layers"])
    if "auto" in started:
        assert started["auto"]["backend"] == "landlock"
    else:
        assert "code verification refused" in report["auto"]["error"] and "unsafe_process" in report["auto"]["error"]
