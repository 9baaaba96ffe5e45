"""The `landlock` sandbox backend: Landlock and seccomp, applied between fork and exec; no root, no bwrap.

`kernel_support()` probes what the running kernel offers; `confinement(...)` returns the
`preexec_fn` that confines one program before its interpreter starts:

- **Landlock** (`landlockpy`): read-only access to the system and interpreter directories, read
  and write to the program's own directory and a few devices (`/dev/null`, `/dev/urandom`), no
  execute right but on the interpreter itself (a shell or any other binary is refused), and
  nothing else of the host (HOME, `/tmp`, `/proc`, other users' files). Hard links and renames
  out of the directory are refused (Landlock's `REFER` rule). On ABI 4+ TCP bind and connect are
  refused; on ABI 6+ signals and abstract UNIX sockets outside the sandbox are out of reach.
- **seccomp** (`pyseccomp`, over the system's libseccomp): `socket()` is refused for every family
  (no network, not even loopback or UNIX sockets; `socketpair` stays), and so are `ptrace`, new
  namespaces, mounts, `setsid`/`setpgid` (every process stays in the group `run_python` kills),
  changes of metadata Landlock does not cover (`chmod`, `chown`, timestamps, extended attributes),
  `io_uring`, `bpf`, `perf_event_open`, keyrings, modules and other host-wide calls.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any

MIN_ABI = 1
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
# Namespace flags of clone(2): CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME.
CLONE_NEW_ANY = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080
TIOCSTI = 0x5412
DENIED_CALLS = (
    "socket", "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "unshare", "setns",
    "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "setsid", "setpgid", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "open_by_handle_at", "name_to_handle_at", "syslog",
    "iopl", "ioperm", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname",
    "setdomainname", "personality", "lookup_dcookie", "vhangup", "nfsservctl",
    # Landlock does not cover metadata: no chmod, chown, timestamps or extended attributes anywhere
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "utime", "utimes",
    "utimensat", "futimesat", "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr",
    "fremovexattr", "setxattrat", "removexattrat",
)  # fmt: skip
FS_IOC_SETFLAGS, FS_IOC_FSSETXATTR = 0x40086602, 0x401C5820  # chattr: file flags and project ids
SYSTEM_DIRECTORIES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime")
READ_WRITE_DEVICES = ("/dev/null", "/dev/zero", "/dev/full")
READ_DEVICES = ("/dev/urandom", "/dev/random")


def kernel_support() -> dict[str, Any]:
    """What this kernel and installation offer: {"landlock_abi", "seccomp", "problems": [...]}."""
    problems = []
    abi = 0
    try:
        import landlockpy

        abi = landlockpy.abi_version()
        if abi < MIN_ABI:
            problems.append("the kernel has no Landlock (Linux 5.13+ with landlock in the boot's lsm= list)")
    except ImportError:
        problems.append("the Python package landlockpy is not installed (pip install landlockpy)")
    except OSError as error:
        problems.append(f"Landlock probe failed: {error}")
    seccomp = False
    try:
        _seccomp_filter()
        seccomp = True
    except ImportError:
        problems.append("the Python package pyseccomp is not installed (pip install pyseccomp)")
    except (OSError, RuntimeError, ValueError, AttributeError) as error:
        problems.append(f"seccomp unavailable ({error}; libseccomp.so.2 is in the libseccomp2 system package)")
    return {"landlock_abi": abi, "seccomp": seccomp, "problems": problems}


@functools.lru_cache(maxsize=1)
def _seccomp_filter() -> Any:
    """The syscall filter, built once per process (loaded in each child): allow by default, refuse the list."""
    import pyseccomp as seccomp

    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in DENIED_CALLS:
        try:
            rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
        except (RuntimeError, ValueError, OSError):  # a call this architecture or libseccomp does not know
            continue
    for bit in (1 << i for i in range(32) if CLONE_NEW_ANY >> i & 1):  # (flags & bit) == bit, one per flag
        rules.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, bit, bit))
    # clone3 passes its flags in memory seccomp cannot read: ENOSYS makes libc fall back to clone
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for request in (TIOCSTI, FS_IOC_SETFLAGS, FS_IOC_FSSETXATTR):
        rules.add_rule(seccomp.ERRNO(errno.EPERM), "ioctl", seccomp.Arg(1, seccomp.EQ, request))
    if _landlock_abi() < 3:  # truncate(2) is outside Landlock's control before ABI 3
        rules.add_rule(seccomp.ERRNO(errno.EPERM), "truncate")
    return rules


@functools.lru_cache(maxsize=1)
def _landlock_abi() -> int:
    try:
        import landlockpy
    except ImportError:
        return 0
    return landlockpy.abi_version()


@functools.lru_cache(maxsize=8)
def elf_interpreter(executable: str) -> tuple[str, ...]:
    """The dynamic loader an ELF executable names (PT_INTERP), e.g. /lib64/ld-linux-x86-64.so.2; () if none."""
    try:
        with open(os.path.realpath(executable), "rb") as handle:
            header = handle.read(64)
            if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:  # 64-bit little-endian only
                return ()
            phoff = int.from_bytes(header[32:40], "little")
            size, count = int.from_bytes(header[54:56], "little"), int.from_bytes(header[56:58], "little")
            handle.seek(phoff)
            table = handle.read(size * count)
            for index in range(count):
                entry = table[index * size : (index + 1) * size]
                if int.from_bytes(entry[0:4], "little") == 3:  # PT_INTERP
                    handle.seek(int.from_bytes(entry[8:16], "little"))
                    path = handle.read(int.from_bytes(entry[32:40], "little")).rstrip(b"\0").decode()
                    return (path,) if os.path.exists(path) else ()
    except (OSError, UnicodeDecodeError):
        return ()
    return ()


def scopes_available() -> bool:
    """Signals and abstract UNIX sockets outside the sandbox are out of reach (Landlock ABI 6)."""
    return _landlock_abi() >= 6


def network_rules_available() -> bool:
    return _landlock_abi() >= 4


def confinement(
    workdir: str, python: str, read_dirs: Sequence[str], drop_capabilities: bool = False
) -> Callable[[], None]:
    """A `preexec_fn`: Landlock rules for this run, then the seccomp filter; the ruleset is built here (parent).

    `drop_capabilities` (root keeping uid 0): empty the capability bounding set, so the exec'd
    interpreter starts with no capability.
    """
    from landlockpy import AccessFS, Ruleset, Scope

    ruleset = Ruleset(scoped=Scope.ABSTRACT_UNIX_SOCKET | Scope.SIGNAL)
    read_dir = AccessFS.READ_FILE | AccessFS.READ_DIR
    for path in dict.fromkeys([*SYSTEM_DIRECTORIES, *read_dirs]):
        if os.path.isdir(path):
            ruleset.allow_path(path, read_dir)
    for path in (*SYSTEM_FILES, *READ_DEVICES):
        if os.path.exists(path) and not os.path.isdir(path):
            ruleset.allow_path(path, AccessFS.READ_FILE)
    for path in READ_WRITE_DEVICES:
        if os.path.exists(path):
            ruleset.allow_path(path, AccessFS.READ_FILE | AccessFS.WRITE_FILE)
    for executable in (python, *elf_interpreter(python)):  # the kernel opens the loader for execution too
        ruleset.allow_path(os.path.realpath(executable), AccessFS.READ_FILE | AccessFS.EXECUTE)
    denied_here = AccessFS.EXECUTE | AccessFS.MAKE_CHAR | AccessFS.MAKE_BLOCK | AccessFS.MAKE_SOCK
    ruleset.allow_path(workdir, ruleset.handled_fs & ~denied_here)
    # The TCP rules need no port rule: handled and never granted, so every bind and connect is refused.
    rules = _seccomp_filter()
    libc = ctypes.CDLL(None, use_errno=True)

    def confine() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if drop_capabilities:
            for capability in range(64):
                if libc.prctl(PR_CAPBSET_DROP, capability) != 0 and ctypes.get_errno() == errno.EINVAL:
                    break  # past the last capability this kernel knows
        ruleset.restrict()  # sets no_new_privs first
        rules.load()

    confine.ruleset = ruleset  # type: ignore[attr-defined]  # closed by the caller once the child has started
    return confine
