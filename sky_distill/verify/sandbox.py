"""Running untrusted Python: `run_python(code, stdin, timeout_s, memory_mb)` in layers of isolation.

Layers (`isolation_layers()` says which are active on this machine):

- **process group and limits**: the program runs in its own session and process group under
  rlimits on CPU time, address space, processes (and threads), file size, open files and core
  dumps; a wall-clock timeout kills it from outside; stdout and stderr are capped.
- **scrubbed environment and fresh directory**: no inherited variables (secrets, tokens), a new
  empty working directory, `python -I -S` (no user site, no `PYTHON*` variables).
- **bubblewrap** (`bwrap`, when installed and working): new mount, PID, network, IPC and UTS
  namespaces. The file system is read-only system and interpreter directories plus two
  size-capped tmpfs (`/sandbox`, the working directory, and `/tmp`); HOME and every other path
  of the host are absent. No network interface but loopback. The caller's processes are not
  visible; killing the namespace's first process ends every process the program started,
  daemons included, before `run_python` returns. As root, bwrap runs without a user namespace
  and the program drops to a random unprivileged uid (so the process limit holds and nothing
  of the host is writable); as another user, bwrap adds a user namespace.
- **landlock** (no bwrap; no root needed): Landlock file-system, network and scope rules and a
  seccomp filter (`sandbox_landlock.py`), applied between fork and exec: the program reads the
  system and interpreter directories, writes only its own directory, executes nothing but the
  interpreter, opens no socket, cannot leave its process group or signal the caller. As root it
  also drops to a random uid when the interpreter is readable by other users.
- **unshare** and **unsafe_process** (only when named): new network, PID, IPC and UTS namespaces
  through util-linux `unshare` (root), or nothing but the process group, rlimits and environment.
  Both leave the host file system open to the program.

Fail closed: `auto` takes bwrap, then landlock, and raises `SandboxUnavailable` (one line: what
is missing and how to get it) when neither contains a program here; a weaker backend runs only
when it is named, and `isolation_layers()` (recorded in every report) then says what is exposed.
Untrusted code never runs outside this function. The program runs as `__main__` after a small
trusted entry (`sandbox_entry.py`) has set the limits; `SandboxResult.completed` tells a
program that ran to its end from one that exited early (`sys.exit(0)` in a solution).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sky_distill.errors import SkyDistillError

log = logging.getLogger(__name__)

STATUSES = ("ok", "runtime_error", "timeout", "memory", "output_limit", "disk_limit", "sandbox_error")
BACKENDS = ("auto", "bwrap", "landlock", "unshare", "unsafe_process")
CONTAINING = ("bwrap", "landlock")  # the host file system and the network are out of the program's reach
DISK_POLL_S = 0.05  # without a size-capped tmpfs the working directory is measured this often
SANDBOX_DIR = "/sandbox"
ENTRY_SOURCE = (Path(__file__).with_name("sandbox_entry.py")).read_text(encoding="utf-8")
MARK_VARIABLE = "SKY_DISTILL_SANDBOX_RUN"  # marks the plain backend's processes, to find daemons that leave the group
MODULE_FILES = ("sandbox.py", "sandbox_entry.py", "sandbox_landlock.py")  # all it needs of the package (+ errors.py)
UID_BASE = 1_000_000_000  # root drops the program to UID_BASE + a random offset below 2**24


class SandboxUnavailable(SkyDistillError, RuntimeError):
    """No backend here contains untrusted code, or the named one does not start: nothing was run."""


@dataclass(frozen=True)
class SandboxLimits:
    """What one program may use. `max_processes` counts threads too (RLIMIT_NPROC). The defaults here
    are the defaults of `verify.sandbox` (config.SandboxConfig reads them)."""

    timeout_s: float = 6.0  # per stdio case, or the whole functional program
    memory_mb: int = 1024
    max_processes: int = 32
    max_file_mb: int = 16
    disk_mb: int = 64
    max_open_files: int = 64
    max_output_bytes: int = 4 << 20

    def rlimits(self) -> dict[str, tuple[int, int]]:
        cpu = math.ceil(self.timeout_s) + 1
        return {
            "RLIMIT_CPU": (cpu, cpu + 1),
            "RLIMIT_AS": (self.memory_mb << 20, self.memory_mb << 20),
            "RLIMIT_NPROC": (self.max_processes, self.max_processes),
            "RLIMIT_FSIZE": (self.max_file_mb << 20, self.max_file_mb << 20),
            "RLIMIT_NOFILE": (self.max_open_files, self.max_open_files),
            "RLIMIT_CORE": (0, 0),
        }


@dataclass(frozen=True)
class SandboxResult:
    """How a program ended. `status` is one of `STATUSES`."""

    status: str
    stdout: str
    stderr: str
    elapsed_s: float
    exit_code: int | None = None
    signal: str | None = None
    completed: bool = False  # ran to the end of the program (no early exit, no error)
    detail: str | None = None
    backend: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Backend:
    """How programs are isolated on this machine, resolved once per process."""

    name: str  # bwrap | landlock | unshare | unsafe_process
    drop_uid: bool  # root switches the program to an unprivileged uid
    user_namespace: bool  # bwrap run by a non-root user
    python: str  # the interpreter the program runs under
    python_flags: tuple[str, ...] = ("-I", "-S")  # -I: isolated mode; -S: no site-packages
    binds: tuple[str, ...] = field(default_factory=tuple)  # interpreter directories, bound read-only (bwrap)
    tool: str = ""  # absolute path of bwrap or unshare
    note: str = ""

    @property
    def contained(self) -> bool:
        return self.name in CONTAINING


# --- the interpreter -------------------------------------------------------------------------


def _interpreter(site_packages: bool) -> tuple[str, tuple[str, ...]]:
    """The Python to run programs with and the directories it needs (prefix, and the venv with site-packages)."""
    if site_packages:
        return sys.executable, tuple(dict.fromkeys([os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)]))
    return os.path.realpath(sys.executable), (os.path.realpath(sys.base_prefix),)


def _readable_by_others(path: str) -> bool:
    """Whether an unprivileged uid can reach `path` (every parent directory searchable by others)."""
    current = Path(path).resolve()
    for directory in [current, *current.parents]:
        try:
            mode = directory.stat().st_mode
        except OSError:
            return False
        if directory != current and not mode & 0o001:
            return False
    return bool(current.stat().st_mode & 0o004)


# --- backends ----------------------------------------------------------------------------------


def _is_root() -> bool:
    return os.geteuid() == 0


REFUSAL_HELP = (
    "install bubblewrap (apt-get install bubblewrap), or run on Linux 5.13+ with Landlock and "
    "`pip install landlockpy pyseccomp` (libseccomp2 on the system); or accept a program that can read and "
    "write the host and reach the network by naming a weaker backend: verify.sandbox.backend=unsafe_process"
)


@functools.lru_cache(maxsize=8)
def resolve_backend(requested: str = "auto", site_packages: bool = False) -> Backend:
    """The strongest containing backend that works here (`auto`), or the one named if it works.

    Raises `SandboxUnavailable` when `auto` finds no backend that keeps the program off the host's
    files and network: weaker ones run only when named.
    """
    if requested not in BACKENDS:
        raise ValueError(f"sandbox backend must be one of {BACKENDS}, got {requested!r}")
    python, prefixes = _interpreter(site_packages)
    flags = ("-I",) if site_packages else ("-I", "-S")
    candidates = list(CONTAINING) if requested == "auto" else [requested]
    problems = []
    for name in candidates:
        backend, missing = _candidate(name, python, flags, prefixes)
        if backend is None:
            problems.append(f"{name}: {missing}")
            continue
        failure = _probe(backend)
        if failure is None:
            if problems:
                log.info("sandbox: using %s (%s)", name, "; ".join(problems))
            if not backend.contained:
                log.warning("sandbox: %s, named in the config, leaves the host file system open to the program", name)
            return backend
        problems.append(f"{name}: {failure}")
    if requested == "auto":
        raise SandboxUnavailable(
            "code verification refused: no sandbox here keeps model-written code off the host's files and network ("
            + "; ".join(problems)
            + "); "
            + REFUSAL_HELP
        )
    raise SandboxUnavailable(f"sandbox backend {requested!r} does not work here: " + "; ".join(problems))


def require_containment(requested: str = "auto", site_packages: bool = False) -> dict[str, Any]:
    """Check before any code runs that the configured backend starts; its `isolation_layers()` to record.

    `auto` fails closed (`SandboxUnavailable`); a named weaker backend is accepted and its exposure logged.
    """
    resolve_backend(requested, site_packages)
    return isolation_layers(requested, site_packages)


def _candidate(name: str, python: str, flags: tuple[str, ...], prefixes: tuple[str, ...]) -> tuple[Backend | None, str]:
    """The backend if its tool or kernel support is here, else None and what is missing."""
    root = _is_root()
    if name == "bwrap":
        tool = shutil.which("bwrap")
        if tool is None:
            return None, "not installed (apt-get install bubblewrap)"
        return Backend("bwrap", root, not root, python, flags, prefixes, tool), ""
    if name == "landlock":
        from sky_distill.verify.sandbox_landlock import kernel_support

        support = kernel_support()
        if support["problems"]:
            return None, "; ".join(support["problems"])
        drop, note = _uid_drop(python, prefixes)
        return Backend("landlock", drop, False, python, flags, prefixes, "", note), ""
    if name == "unshare":
        tool = shutil.which("unshare")
        if tool is None or not root:
            return None, "needs root and util-linux unshare"
        drop, note = _uid_drop(python, prefixes)
        return Backend("unshare", drop, False, python, flags, prefixes, tool, note), ""
    return Backend("unsafe_process", False, False, python, flags, prefixes), ""


def _uid_drop(python: str, prefixes: tuple[str, ...]) -> tuple[bool, str]:
    """Root switches the program to a random uid when that uid can still run the interpreter."""
    if not _is_root():
        return False, ""
    if all(_readable_by_others(path) for path in (python, *prefixes)):
        return True, ""
    return False, f"{python} is not readable by other users: the program keeps uid 0"


def _probe(backend: Backend) -> str | None:
    """None if a trivial program runs and prints under this backend, else what went wrong."""
    try:
        result = _run(backend, "print(6 * 7)", "", SandboxLimits(timeout_s=20))
    except OSError as error:
        return str(error)
    if result.status == "ok" and result.stdout.strip() == "42":
        return None
    return f"{result.status}: {(result.detail or result.stderr).strip()[-300:]}"


def isolation_layers(backend: str = "auto", site_packages: bool = False) -> dict[str, Any]:
    """Which isolation layers are active here: {"backend", "contained", "kernel", "layers": {layer: {"active", "how"}}}."""
    from sky_distill.verify.sandbox_landlock import kernel_support

    kernel = kernel_support()
    try:
        chosen = resolve_backend(backend, site_packages)
    except SandboxUnavailable as error:
        return {"backend": None, "contained": False, "error": str(error), "kernel": kernel, "layers": {}}
    name = chosen.name
    bwrap, landlock, unshare = name == "bwrap", name == "landlock", name == "unshare"
    namespaces = bwrap or unshare
    root_kept = _is_root() and not chosen.drop_uid and not chosen.user_namespace
    separate_uid = chosen.drop_uid or chosen.user_namespace
    user_limit = not _is_root() and not namespaces
    scoped = landlock and kernel["landlock_abi"] >= 6
    if separate_uid:
        process_limit = "RLIMIT_NPROC counted for the program's own uid" + (
            " (a random unprivileged uid)" if chosen.drop_uid else " (in its own user namespace)"
        )
    elif user_limit:
        process_limit = "RLIMIT_NPROC: this user's processes at the start plus max_processes"
    else:
        process_limit = "RLIMIT_NPROC does not bind uid 0: not effective"
    filesystem = {
        "bwrap": "only system and interpreter directories, read-only; HOME and the rest of the host absent",
        "landlock": "Landlock: system and interpreter directories read-only, its own directory read-write, nothing "
        "else (HOME, /tmp, /proc, other users' files); links and renames out of it refused",
    }
    layers = {
        "process_group": (True, "own session and process group, killed as a whole on timeout"),
        "rlimits": (True, "CPU time, address space, file size, open files, no core dumps"),
        "process_limit": (separate_uid or user_limit, process_limit),
        "wall_timeout": (True, "killed from outside after timeout_s"),
        "output_cap": (True, "stdout and stderr capped; the program is killed past the cap"),
        "scrubbed_environment": (True, "no inherited environment variables; python -I -S"),
        "fresh_directory": (
            True,
            f"a size-capped tmpfs at {SANDBOX_DIR}"
            if bwrap
            else f"a new temporary directory, removed after the run; its size checked every {DISK_POLL_S:g}s",
        ),
        "read_only_filesystem": (
            chosen.contained,
            filesystem.get(name, "the program sees the host file system")
            + (" as an unprivileged uid" if chosen.drop_uid and not chosen.contained else ""),
        ),
        "no_network": (
            namespaces or landlock,
            "new network namespace (loopback only)"
            if namespaces
            else "seccomp refuses socket() for every family"
            + (", Landlock every TCP bind and connect" if kernel["landlock_abi"] >= 4 else "")
            if landlock
            else "network reachable",
        ),
        "every_process_killed": (
            namespaces or landlock,
            "new PID namespace: every process it started is killed before run_python returns"
            if namespaces
            else "setsid and setpgid refused (seccomp): every process it started stays in its group, killed before "
            "run_python returns"
            if landlock
            else "kills the process group, then processes marked in their environment: a daemon that clears it survives",
        ),
        "caller_unreachable": (
            namespaces or scoped or chosen.drop_uid,
            "the caller's processes are outside its PID namespace"
            + (" and owned by another uid" if chosen.drop_uid else "")
            if namespaces
            else "Landlock signal scope: no signal reaches a process outside the sandbox"
            if scoped
            else "another uid"
            if chosen.drop_uid
            else "same uid, same PID namespace: it could signal its parent",
        ),
        "no_privileges": (
            not root_kept or landlock,
            "no capabilities, no_new_privs"
            if bwrap
            else "uid 0 with an empty capability bounding set, no_new_privs"
            if landlock and root_kept
            else "unprivileged uid" + (", no_new_privs" if landlock else "")
            if not root_kept
            else "runs as root",
        ),
        "syscall_filter": (
            landlock,
            "seccomp: no ptrace, new namespaces, mounts, chmod/chown/utime/xattr, io_uring, bpf, keyrings or modules"
            if landlock
            else "none",
        ),
        "exec_only_interpreter": (
            landlock,
            "Landlock: only the interpreter may be executed (no shell, no other binary)"
            if landlock
            else "any binary it can read",
        ),
    }
    return {
        "backend": name,
        "contained": chosen.contained,
        "python": chosen.python,
        "note": chosen.note,
        "kernel": kernel,
        "layers": {layer: {"active": active, "how": how} for layer, (active, how) in layers.items()},
    }


def layers_summary(report: dict[str, Any]) -> str:
    """One line for tables and logs: the backend, and what it leaves open."""
    if not report.get("backend"):
        return "no sandbox"
    missing = [name for name, layer in report["layers"].items() if not layer["active"]]
    return report["backend"] + (f" (inactive: {', '.join(missing)})" if missing else " (all layers)")


# --- running -------------------------------------------------------------------------------------


def run_python(
    code: str,
    stdin: str = "",
    timeout_s: float | None = None,
    memory_mb: int | None = None,
    *,
    limits: SandboxLimits | None = None,
    backend: str = "auto",
    site_packages: bool = False,
) -> SandboxResult:
    """Run untrusted Python source with `stdin` as its input; never raises for the program's behaviour.
    `timeout_s` and `memory_mb`, when given, replace those of `limits`."""
    limits = limits or SandboxLimits()
    given = {"timeout_s": timeout_s, "memory_mb": memory_mb}
    limits = replace(limits, **{key: value for key, value in given.items() if value is not None})
    return _run(resolve_backend(backend, site_packages), code, stdin, limits)


def _ancestors(path: str) -> list[str]:
    parents = [str(parent) for parent in Path(path).parents if str(parent) != "/"]
    return list(reversed(parents))


def _bwrap_command(backend: Backend, workdir: Path, limits: SandboxLimits, info_fd: int) -> list[str]:
    """bwrap arguments: namespaces, read-only system, tmpfs working directory and /tmp."""
    command = [backend.tool, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    command += ["--die-with-parent", "--new-session", "--info-fd", str(info_fd)]
    if backend.user_namespace:
        command += ["--unshare-user", "--disable-userns"]
    else:
        command += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]  # for the entry's uid drop only
    for directory in ("/usr", "/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d"):
        if os.path.exists(directory):
            command += ["--ro-bind", directory, directory]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = f"/{name}"
        if os.path.islink(host):
            command += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            command += ["--ro-bind", host, host]
    created: set[str] = set()
    for prefix in backend.binds:
        if prefix == "/usr" or prefix.startswith("/usr/"):
            continue
        for parent in _ancestors(prefix):
            if parent not in created and not parent.startswith("/usr"):
                command += ["--perms", "0755", "--dir", parent]
                created.add(parent)
        command += ["--ro-bind", prefix, prefix]
    command += ["--proc", "/proc", "--dev", "/dev"]
    size = str(limits.disk_mb << 20)
    command += ["--perms", "01777", "--size", size, "--tmpfs", SANDBOX_DIR]
    command += ["--ro-bind", str(workdir / "main.py"), f"{SANDBOX_DIR}/main.py"]
    command += ["--perms", "01777", "--size", size, "--tmpfs", "/tmp"]
    command += ["--chdir", SANDBOX_DIR, "--clearenv"]
    for key, value in _environment(SANDBOX_DIR).items():
        command += ["--setenv", key, value]
    return command


def _environment(home: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": "/tmp" if home == SANDBOX_DIR else home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _run(backend: Backend, code: str, stdin: str, limits: SandboxLimits) -> SandboxResult:
    workdir = Path(tempfile.mkdtemp(prefix="sky-sandbox-"))
    token = secrets.token_hex(16)
    uid = UID_BASE + secrets.randbelow(1 << 24) if backend.drop_uid else None
    status_read, status_write = os.pipe()
    token_read, token_write = os.pipe()
    info_read, info_write = os.pipe() if backend.name == "bwrap" else (-1, -1)
    process = None
    try:
        (workdir / "main.py").write_text(code, encoding="utf-8")
        (workdir / "stdin").write_text(stdin, encoding="utf-8")
        os.write(token_write, token.encode())
        os.close(token_write)
        token_write = -1
        if backend.name == "bwrap":
            program = f"{SANDBOX_DIR}/main.py"
            prefix = _bwrap_command(backend, workdir, limits, info_write)
            env, cwd = None, None
        else:
            program = str(workdir / "main.py")
            isolate = ["--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]
            prefix = [backend.tool, *isolate] if backend.name == "unshare" else []
            env, cwd = {**_environment(str(workdir)), MARK_VARIABLE: token}, str(workdir)
            if uid is not None:
                os.chown(workdir, uid, uid)
        confine = None
        if backend.name == "landlock":
            from sky_distill.verify.sandbox_landlock import confinement

            root_kept = _is_root() and uid is None
            confine = confinement(str(workdir), backend.python, backend.binds, drop_capabilities=root_kept)
        settings = {
            "rlimits": limits.rlimits(),
            "uid": uid,
            "gid": uid,
            "program": program,
            "status_fd": status_write,
            "token_fd": token_read,
        }
        if backend.name in ("landlock", "unsafe_process") and not _is_root():  # RLIMIT_NPROC counts all of the user's
            allowed = limits.max_processes + _tasks_of_user(os.getuid())
            settings["rlimits"]["RLIMIT_NPROC"] = (allowed, allowed)
        command = [*prefix, backend.python, *backend.python_flags, "-c", ENTRY_SOURCE, json.dumps(settings)]
        with open(workdir / "stdin", "rb") as stdin_file:
            started = time.monotonic()
            process = subprocess.Popen(
                command,
                stdin=stdin_file,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=[fd for fd in (status_write, token_read, info_write) if fd >= 0],
                env=env if backend.name != "bwrap" else {},  # bwrap sets the program's own (--clearenv)
                cwd=cwd,
                start_new_session=True,
                preexec_fn=confine or (_die_with_parent if backend.name == "unsafe_process" else None),
            )
        if confine is not None:
            confine.ruleset.close()
        for fd in (status_write, token_read, info_write):
            if fd >= 0:
                os.close(fd)
        status_write = token_read = info_write = -1
        inner_pid = _read_child_pid(info_read, max(limits.timeout_s, 10.0)) if backend.name == "bwrap" else None
        disk = None if backend.name == "bwrap" else functools.partial(_over_disk_limit, workdir, limits.disk_mb)
        stdout, stderr, why = _collect(process, limits, started, disk)
        if why is not None:
            _kill(process, inner_pid)
        process.wait()
        elapsed = time.monotonic() - started
        if backend.name == "landlock":  # setsid and setpgid are refused: every process is in the group
            _kill_group(process.pid)
        if backend.name == "unsafe_process":  # what is left of the group, and what carries the mark
            _kill(process, None)
            _kill_marked(token)
        outcome = _read_status(status_read, token)
        return _result(backend, process.returncode, stdout, stderr, elapsed, why, outcome, limits)
    finally:
        if process is not None and process.poll() is None:
            _kill(process, None)
            process.wait()
        for fd in (status_read, status_write, token_read, token_write, info_read, info_write):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)


def _over_disk_limit(workdir: Path, disk_mb: int) -> bool:
    """Whether the files under `workdir` take more than `disk_mb` (allocated blocks)."""
    total, limit = 0, disk_mb << 20
    stack = [str(workdir)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total += info.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
        if total > limit:
            return True
    return False


def _kill_group(pgid: int, wait_s: float = 2.0) -> None:
    """SIGKILL the process group until no process is left in it (or `wait_s` passes: zombies nobody reaps)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        if time.monotonic() > deadline:
            log.warning("sandbox: process group %d still has members %ss after SIGKILL", pgid, wait_s)
            return
        time.sleep(0.005)


def _tasks_of_user(uid: int) -> int:
    """Processes and threads `uid` runs now (what RLIMIT_NPROC counts)."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry}/task"))
            except OSError:
                continue
    return count


def _die_with_parent() -> None:
    """preexec for the plain backend: the program gets SIGKILL if the caller dies."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _read_child_pid(info_fd: int, timeout_s: float) -> int | None:
    """bwrap's `--info-fd` JSON: the PID (in our namespace) of the sandbox's first process."""
    chunks = []
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(info_fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            try:
                chunk = os.read(info_fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"}" in chunk:
                break
    try:
        return int(json.loads(b"".join(chunks))["child-pid"])
    except (ValueError, KeyError):
        return None


def _collect(
    process: subprocess.Popen,
    limits: SandboxLimits,
    started: float,
    over_disk: Callable[[], bool] | None = None,
) -> tuple[bytes, bytes, str | None]:
    """Read stdout and stderr until both close; stop early on the time limit, the output cap or `over_disk()`."""
    buffers = {process.stdout: bytearray(), process.stderr: bytearray()}
    selector = selectors.DefaultSelector()
    for stream in buffers:
        os.set_blocking(stream.fileno(), False)
        selector.register(stream, selectors.EVENT_READ)
    why = None
    exited_at = None
    try:
        while selector.get_map():
            now = time.monotonic()
            remaining = limits.timeout_s - (now - started)
            if remaining <= 0:
                why = "timeout"
                break
            if exited_at is None and process.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.5:
                break  # the program is done; a leftover process holds the pipes open (killed next)
            if over_disk is not None and over_disk():
                why = "disk_limit"
                break
            for key, _ in selector.select(timeout=min(remaining, 0.5 if over_disk is None else DISK_POLL_S)):
                try:
                    chunk = os.read(key.fileobj.fileno(), 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffers[key.fileobj] += chunk
            if sum(len(buffer) for buffer in buffers.values()) > limits.max_output_bytes:
                why = "output_limit"
                break
    finally:
        selector.close()
    if why is None:
        try:
            process.wait(timeout=max(0.1, limits.timeout_s - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            why = "timeout"
    cap = limits.max_output_bytes
    return bytes(buffers[process.stdout][:cap]), bytes(buffers[process.stderr][: 1 << 16]), why


def _kill(process: subprocess.Popen, inner_pid: int | None, grace_s: float = 5.0) -> None:
    """SIGKILL the sandbox and wait until every process in it is gone.

    With a PID namespace the namespace's first process is killed: the kernel kills the rest and
    bwrap exits only once all of them are reaped, so waiting for bwrap waits for all of them.
    Killing bwrap first would return while the namespace is still being torn down.
    """
    if inner_pid and process.poll() is None and _parent_of(inner_pid) == process.pid:
        try:
            os.kill(inner_pid, signal.SIGKILL)
            process.wait(timeout=grace_s)
            return
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            log.warning("sandbox: bwrap did not exit %ss after its namespace was killed", grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _kill_marked(token: str, wait_s: float = 2.0) -> None:
    """SIGKILL this user's processes whose environment carries the run's mark (daemons that left the
    group), and wait until they are dead."""
    mark = f"{MARK_VARIABLE}={token}".encode()
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if mark in handle.read().split(b"\0"):
                    os.kill(int(entry), signal.SIGKILL)
                    killed.append(int(entry))
        except (OSError, ProcessLookupError):
            continue
    deadline = time.monotonic() + wait_s
    while killed and time.monotonic() < deadline:
        killed = [pid for pid in killed if _state_of(pid) not in (None, "Z", "X")]
        if killed:
            time.sleep(0.01)


def _state_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _read_status(status_fd: int, token: str) -> list[str]:
    """The entry's status lines that carry this run's token: 'started', then how the program ended."""
    chunks = []
    os.set_blocking(status_fd, False)
    while True:
        try:
            chunk = os.read(status_fd, 4096)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    lines = b"".join(chunks).decode(errors="replace").splitlines()
    return [line[len(token) + 1 :] for line in lines if line.startswith(token + " ")]


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _result(
    backend: Backend,
    returncode: int | None,
    stdout_bytes: bytes,
    stderr_bytes: bytes,
    elapsed: float,
    why: str | None,
    outcome: list[str],
    limits: SandboxLimits,
) -> SandboxResult:
    stdout, stderr = _decode(stdout_bytes), _decode(stderr_bytes)
    signal_name = None
    if returncode is not None and returncode < 0:
        signal_name = (
            signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else str(-returncode)
        )
    elif returncode is not None and returncode > 128 and backend.name in ("bwrap", "unshare"):
        number = returncode - 128  # bwrap and unshare report a killed child as 128 + signal
        if number in signal.Signals._value2member_map_:
            signal_name = signal.Signals(number).name
    common = {"stdout": stdout, "stderr": stderr, "elapsed_s": round(elapsed, 4), "exit_code": returncode}
    common.update(signal=signal_name, backend=backend.name)
    ended = outcome[-1] if len(outcome) > 1 else None
    if why == "timeout" or signal_name == "SIGXCPU":
        return SandboxResult("timeout", **common, detail=f"exceeded {limits.timeout_s:g}s")
    if why == "output_limit":
        return SandboxResult("output_limit", **common, detail=f"output exceeded {limits.max_output_bytes} bytes")
    if why == "disk_limit":
        return SandboxResult("disk_limit", **common, detail=f"files exceeded {limits.disk_mb} MB")
    if not outcome:
        last = stderr.strip().splitlines()[-1:] or [f"exit code {returncode}"]
        return SandboxResult("sandbox_error", **common, detail=f"the sandbox did not start: {last[0]}")
    if ended == "memory" or (ended is None and "MemoryError" in stderr[-2000:]):
        return SandboxResult("memory", **common, detail=f"out of memory ({limits.memory_mb} MB)")
    if returncode == 0 and signal_name is None:
        return SandboxResult("ok", **common, completed=ended == "completed")
    last_line = stderr.strip().splitlines()[-1] if stderr.strip() else None
    detail = last_line or (f"killed by {signal_name}" if signal_name else f"exit code {returncode}")
    return SandboxResult("runtime_error", **common, detail=detail[:500])


def layers_table(backends: tuple[str, ...] = ("bwrap", "landlock", "unshare", "unsafe_process")) -> str:
    """A markdown table: one column per backend that starts here, one row per layer (yes/no)."""
    reports = {name: isolation_layers(name) for name in backends}
    started = {name: report for name, report in reports.items() if report["backend"]}
    names = list(next(iter(started.values()))["layers"]) if started else []
    lines = ["| layer | " + " | ".join(started) + " |", "|---|" + "---|" * len(started)]
    for layer in names:
        cells = ["yes" if report["layers"][layer]["active"] else "no" for report in started.values()]
        lines.append(f"| {layer.replace('_', ' ')} | " + " | ".join(cells) + " |")
    for name, report in reports.items():
        if not report["backend"]:
            lines.append(f"\n{name}: did not start ({report['error'].split(': ', 1)[-1][:200]})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """`python -m sky_distill.verify.sandbox [--backend NAME] [--table]`: the layers active here."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
    parser.add_argument("--table", action="store_true", help="a markdown table over every backend that starts here")
    args = parser.parse_args(argv)
    print(layers_table() if args.table else json.dumps(isolation_layers(args.backend), indent=2))


if __name__ == "__main__":
    main()
