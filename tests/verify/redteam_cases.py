"""Hostile programs that try to reach the host, each with the check of the host that says whether it escaped.

Standard library only: `test_redteam.py` runs every case against every backend that starts, and
`test_sandbox_users.py` copies this file to run the same cases as an unprivileged user. A case
is `case(run, scratch) -> list[str]`: `run(code, **limits)` is `run_python` bound to one backend,
`scratch` a host directory outside the sandbox that other users can traverse; the list names
every escape (empty: contained, or refused before running).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

Run = Callable[..., object]


def _attempts(actions: list[str]) -> str:
    """A program that tries each action (a Python expression) and prints `done N` or `denied N <error>`."""
    lines = ["import os, shutil, socket, subprocess, sys", "results = []"]
    for index, action in enumerate(actions):
        lines += [
            "try:",
            f"    {action}",
            f"    print('done {index}')",
            "except BaseException as error:",
            f"    print('denied {index}', type(error).__name__)",
        ]
    return "\n".join(lines) + "\n"


def _done(result: object, what: list[str]) -> list[str]:
    """The attempts that succeeded; a program that did not report every attempt is a broken case, not a pass."""
    stdout = getattr(result, "stdout", "")
    lines = [line for line in stdout.splitlines() if line.startswith(("done ", "denied "))]
    if len(lines) != len(what):
        status, stderr = getattr(result, "status", "?"), getattr(result, "stderr", "")[-500:]
        return [f"the program reported {len(lines)} of {len(what)} attempts ({status}: {stderr})"]
    return [f"{what[int(line.split()[1])]} succeeded" for line in lines if line.startswith("done ")]


def _plant(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def writes_deletes_and_renames_outside(run: Run, scratch: Path) -> list[str]:
    victim = _plant(scratch / "victim.txt", "keep me")
    planted = scratch / "planted.txt"
    actions = [
        f"open({str(planted)!r}, 'w').write('pwned')",
        f"os.remove({str(victim)!r})",
        f"os.rename({str(victim)!r}, {str(scratch / 'renamed.txt')!r})",
        f"os.rename({str(victim)!r}, 'mine.txt')",
        f"os.link({str(victim)!r}, 'hardlink.txt'); open('hardlink.txt', 'a').write('pwned')",
        f"shutil.rmtree({str(scratch)!r})",
        f"os.truncate({str(victim)!r}, 0)",
        f"os.chmod({str(victim)!r}, 0o777)",
        f"os.utime({str(victim)!r}, (0, 0))",
        "fd = os.open(sys.executable, os.O_RDONLY); os.fchmod(fd, os.stat(fd).st_mode)",
        f"os.mkdir({str(scratch / 'newdir')!r})",
        "open('/etc/sky-distill-pwned', 'w').write('x')",
        "open('/usr/sky-distill-pwned', 'w').write('x')",
        "open('/tmp/sky-distill-pwned', 'w').write('x')",
    ]
    result = run(_attempts(actions))
    # bwrap gives the program its own /tmp and root directory: for those paths what counts is the host's file
    escapes = [what for what in _done(result, actions) if "sky-distill-pwned" not in what]
    changed = not victim.exists() or victim.read_text() != "keep me"
    if changed or (victim.stat().st_mode & 0o777) != 0o644 or victim.stat().st_mtime == 0:
        escapes.append("the victim file was changed (content, mode or time)")
    for path in (planted, scratch / "renamed.txt", scratch / "newdir"):
        if path.exists():
            escapes.append(f"{path} exists")
    for path in (Path("/etc/sky-distill-pwned"), Path("/usr/sky-distill-pwned"), Path("/tmp/sky-distill-pwned")):
        if path.exists():
            escapes.append(f"{path} exists")
            with contextlib.suppress(OSError):
                path.unlink()
    return escapes


def secrets_in_home_ssh_cloud_and_other_users(run: Run, scratch: Path) -> list[str]:
    """Plants secrets where they live (HOME, ~/.ssh, ~/.aws, ~/.config/gcloud, the environment, a file of
    another user that permissions would let anyone read) and looks for them in what the program saw."""
    secret = f"secret-{uuid.uuid4().hex}"
    name = f"sky-distill-redteam-{uuid.uuid4().hex[:8]}"
    home = Path.home()
    planted, created = [], []
    for directory in (home, home / ".ssh", home / ".aws", home / ".config" / "gcloud"):
        if not directory.exists():
            with contextlib.suppress(OSError):
                directory.mkdir(parents=True, mode=0o700)
                created.append(directory)
        with contextlib.suppress(OSError):
            planted.append(_plant(directory / name, secret, 0o600))
    other = _plant(scratch / "other-user" / "notes.txt", secret, 0o644)
    other.parent.chmod(0o755)
    if os.geteuid() == 0:
        os.chown(other, 65534, 65534)
    saved = {key: os.environ.get(key) for key in ("AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "OPENAI_API_KEY")}
    os.environ.update(dict.fromkeys(saved, secret))
    paths = [*planted, other, home / ".ssh" / "id_rsa", home / ".ssh" / "id_ed25519", home / ".aws" / "credentials"]
    program = (
        "import os, glob\n"
        "print(dict(os.environ))\n"
        f"for path in {[str(p) for p in paths]!r} + ['/proc/1/environ', f'/proc/{{os.getppid()}}/environ',\n"
        "             '/proc/self/environ', '/etc/shadow', '/etc/passwd']:\n"
        "    try:\n"
        "        print(path, open(path, 'rb').read())\n"
        "    except OSError as error:\n"
        "        print(path, type(error).__name__)\n"
        f"print('LISTING', glob.glob({str(home)!r} + '/*') + glob.glob({str(home)!r} + '/.*') + glob.glob('/home/*/*'))\n"
    )
    try:
        result = run(program)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for path in planted:
            path.unlink(missing_ok=True)
        for directory in reversed(created):
            with contextlib.suppress(OSError):
                directory.rmdir()
    output = getattr(result, "stdout", "") + getattr(result, "stderr", "")
    escapes = ["a planted secret reached the program"] if secret in output else []
    if any(name in line for line in output.splitlines() if line.startswith("LISTING")):
        escapes.append("the program listed HOME")
    if "root:" in output:
        escapes.append("the program read /etc/passwd or /etc/shadow")
    return escapes


def shell_and_subprocess_escapes(run: Run, scratch: Path) -> list[str]:
    target = scratch / "from-shell.txt"
    loader = "/lib64/ld-linux-x86-64.so.2"
    inner = f"open({str(target)!r}, 'w').write('pwned')"
    actions = [
        f"assert os.system('echo pwned > {target}') == 0",
        f"subprocess.run(['/bin/sh', '-c', 'echo pwned > {target}'], check=True)",
        f"subprocess.run(['/usr/bin/env', 'sh', '-c', 'echo pwned > {target}'], check=True)",
        f"subprocess.run([{loader!r}, '/bin/sh', '-c', 'echo pwned > {target}'], check=True)",
        f"subprocess.run([sys.executable, '-c', {inner!r}], check=True)",
        "shutil.copy('/bin/sh', 'sh'); os.chmod('sh', 0o755); "
        f"subprocess.run(['./sh', '-c', 'echo pwned > {target}'], check=True)",
    ]
    result = run(_attempts(actions), timeout_s=15)
    broken = [what for what in _done(result, actions) if what.startswith("the program reported")]
    return broken + ([f"{target} was written"] if target.exists() else [])  # a shell may start inside bwrap


def proc_root_and_symlink_tricks(run: Run, scratch: Path) -> list[str]:
    secret = f"secret-{uuid.uuid4().hex}"
    hidden = _plant(scratch / "hidden.txt", secret, 0o644)
    target = scratch / "via-proc.txt"
    actions = [
        f"print(open('/proc/self/root{hidden}').read())",
        f"print(open('/proc/1/root{hidden}').read())",
        f"open('/proc/self/root{target}', 'w').write('pwned')",
        f"os.symlink({str(hidden)!r}, 'link'); print(open('link').read())",
        f"os.symlink({str(target)!r}, 'out'); open('out', 'w').write('pwned')",
        f"os.symlink({str(scratch)!r}, 'dir'); open('dir/via-link.txt', 'w').write('pwned')",
        f"print(open('/proc/self/cwd/../../{hidden.relative_to('/')}').read())",
        f"fd = os.open({str(scratch)!r}, os.O_RDONLY); print(open(f'/proc/self/fd/{{fd}}/hidden.txt').read())",
        f"fd = os.open({str(scratch)!r}, os.O_PATH); print(os.read(os.open('hidden.txt', os.O_RDONLY, dir_fd=fd), 99))",
    ]
    result = run(_attempts(actions))
    escapes = ["the hidden file was read"] if secret in getattr(result, "stdout", "") else []
    escapes += [f"{path} was written" for path in (target, scratch / "via-link.txt") if path.exists()]
    return escapes


def network_including_loopback(run: Run, scratch: Path) -> list[str]:
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4)
    tcp.settimeout(0.3)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.3)
    # AF_UNIX paths hold at most 107 bytes, and pytest's tmp_path can be longer: a short host directory
    unix_dir = Path(tempfile.mkdtemp(prefix="rt-"))
    unix_path = unix_dir / "host.sock"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(unix_path))
    unix_path.chmod(0o777)
    unix.listen(4)
    unix.settimeout(0.3)
    abstract_name = f"sky-distill-redteam-{uuid.uuid4().hex[:8]}"
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind("\0" + abstract_name)
    abstract.listen(4)
    abstract.settimeout(0.3)
    heard: list[str] = []
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            for server, kind in ((tcp, "tcp"), (unix, "unix"), (abstract, "abstract")):
                with contextlib.suppress(OSError):
                    server.accept()[0].close()
                    heard.append(kind)
            with contextlib.suppress(OSError):
                udp.recvfrom(64)
                heard.append("udp")

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    actions = [
        f"socket.create_connection(('127.0.0.1', {tcp.getsockname()[1]}), timeout=2).close()",
        f"s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('127.0.0.1', {udp.getsockname()[1]}))",
        "socket.create_connection(('1.1.1.1', 53), timeout=2).close()",
        "socket.getaddrinfo('pypi.org', 443)",
        f"s = socket.socket(socket.AF_UNIX); s.connect({str(unix_path)!r})",
        f"s = socket.socket(socket.AF_UNIX); s.connect('\\0{abstract_name}')",
    ]
    try:
        result = run(_attempts(actions), timeout_s=15)
    finally:
        stop.set()
        listener.join(timeout=5)
        for server in (tcp, udp, unix, abstract):
            server.close()
        shutil.rmtree(unix_dir, ignore_errors=True)
    # Under bwrap 127.0.0.1 is the sandbox's own loopback (a datagram sent there stays inside): for loopback
    # what counts is whether the host's sockets heard anything.
    reached = [what for what in _done(result, actions) if "127.0.0.1" not in what]
    return reached + [f"the host's {kind} socket heard from the program" for kind in heard]


def signals_to_the_caller(run: Run, scratch: Path) -> list[str]:
    me, group = os.getpid(), os.getpgid(0)
    actions = [
        "os.kill(os.getppid(), signal.SIGKILL)",
        f"os.kill({me}, signal.SIGTERM)",
        f"os.killpg({group}, signal.SIGTERM)",
        "os.kill(1, signal.SIGTERM)",
        "os.kill(-1, signal.SIGKILL)",
    ]
    program = "import signal\n" + _attempts(actions)
    handler = signal.getsignal(signal.SIGTERM)
    received: list[int] = []
    signal.signal(signal.SIGTERM, lambda number, frame: received.append(number))
    try:
        result = run(program)
    finally:
        signal.signal(signal.SIGTERM, handler)
    # Inside a PID namespace getppid() and 1 are the namespace's own init, and -1 reaches only the sandbox:
    # what counts is the host's processes (a SIGKILL that reached this process would end the test run).
    escapes = [what for what in _done(result, actions) if str(me) in what or str(group) in what]
    return escapes + (["the caller received SIGTERM"] if received else [])


def privileges_ptrace_and_namespaces(run: Run, scratch: Path) -> list[str]:
    caller = os.getpid()  # ptrace of the host's processes (those inside a PID namespace are the sandbox's own)
    actions = [
        "os.setuid(0) if os.getuid() != 0 else (_ for _ in ()).throw(PermissionError('already root'))",
        f"import ctypes; libc = ctypes.CDLL(None, use_errno=True); assert libc.ptrace(16, {caller}, 0, 0) == 0",
        "import ctypes; libc = ctypes.CDLL(None, use_errno=True); assert libc.unshare(0x00020000) == 0",
        "import ctypes; libc = ctypes.CDLL(None, use_errno=True); assert libc.mount(b'none', b'.', b'tmpfs', 0, None) == 0",
        "os.chroot('/')",
        "open('/dev/sda', 'rb')",
        "os.mknod('dev', 0o600 | 0o020000, os.makedev(1, 3))",
    ]
    return _done(run(_attempts(actions)), actions)


# Only these may run without a sandbox (to show that each check can fail): the others signal every
# process or mount file systems when nothing stops them.
SAFE_UNCONFINED = [
    writes_deletes_and_renames_outside,
    secrets_in_home_ssh_cloud_and_other_users,
    shell_and_subprocess_escapes,
    proc_root_and_symlink_tricks,
    network_including_loopback,
]
CASES = [
    writes_deletes_and_renames_outside,
    secrets_in_home_ssh_cloud_and_other_users,
    shell_and_subprocess_escapes,
    proc_root_and_symlink_tricks,
    network_including_loopback,
    signals_to_the_caller,
    privileges_ptrace_and_namespaces,
]


def run_case(case: Callable[[Run, Path], list[str]], run: Run, root: Path) -> list[str]:
    """One case in a fresh scratch directory other users can traverse (removed after)."""
    scratch = root / f"{case.__name__}-{uuid.uuid4().hex[:8]}"
    scratch.mkdir(parents=True)
    scratch.chmod(0o777)
    try:
        return case(run, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
