"""The first code run inside the sandbox (trusted): set limits, drop privileges, run the program.

`sandbox.py` runs this file's source with `python -I -S -c`, so it imports nothing from the
package. argv[1] is a JSON object: `rlimits` ({"RLIMIT_AS": [soft, hard], ...}), `uid`/`gid`
(an unprivileged id to switch to, or null), `program` (the file to run), `status_fd` and
`token_fd` (pipes to the caller). The program runs in this process as `__main__`; then the
token read from `token_fd` is written to `status_fd` with how it ended (`completed`, `exit N`,
`memory`, `error`), so that an early `sys.exit(0)` is told apart from running to the end.
"""

import contextlib
import json
import os
import resource
import sys
import traceback
import types


def _write(fd, text):
    with contextlib.suppress(OSError):
        os.write(fd, text.encode())


def main():
    settings = json.loads(sys.argv[1])
    status_fd, token_fd = settings["status_fd"], settings["token_fd"]
    token = os.read(token_fd, 64).decode()
    os.close(token_fd)
    for name, (soft, hard) in settings["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    if settings.get("gid") is not None:
        os.setgroups([])
        os.setgid(settings["gid"])
    if settings.get("uid") is not None:
        os.setuid(settings["uid"])
    os.closerange(3, status_fd)
    os.closerange(status_fd + 1, 1024)
    _write(status_fd, f"{token} started\n")
    path = settings["program"]
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    program = types.ModuleType("__main__")
    program.__file__ = path
    sys.modules["__main__"] = program
    sys.argv = [path]
    outcome, code = "completed", 0
    try:
        exec(compile(source, path, "exec"), program.__dict__)
    except SystemExit as exit_:
        value = exit_.code
        if value is None or isinstance(value, int):
            code = value or 0
        else:
            print(value, file=sys.stderr)
            code = 1
        outcome = f"exit {code}"
    except MemoryError:
        _print_error()
        outcome, code = "memory", 1
    except BaseException:  # the program's own error: a traceback without this file's frame
        _print_error()
        outcome, code = "error", 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        code = code or 1
    _write(status_fd, f"{token} {outcome}\n")
    os._exit(code)


def _print_error():
    kind, value, trace = sys.exc_info()
    try:
        traceback.print_exception(kind, value, trace.tb_next if trace else None)
    except MemoryError:
        print(f"{kind.__name__}", file=sys.stderr)


main()
