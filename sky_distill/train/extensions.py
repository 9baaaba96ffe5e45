"""DeepSpeed's JIT-built C++ ops on CPU (the shared-memory all-reduce, CPU Adam), built ahead.

torch builds such an op on first use under a `lock` file in its extensions directory, and every
later process that loads it takes that lock for a moment. A process killed while holding it
(a build interrupted, a rank killed with SIGKILL at the wrong instant) leaves the file behind,
and from then on every DeepSpeed start on the machine waits for it forever. So:

- `python -m sky_distill.train.extensions` builds the ops once, in one process (the set-up
  script runs it), so no training job ever holds the lock for longer than a file check;
- `clear_stale_locks()` (called by the launcher before it starts ranks) removes a lock older
  than any build takes, with a warning.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

STALE_LOCK_AGE_S = 900.0  # a build of these ops takes about a minute on 2 cores
CPU_OPS = ("ShareMemCommBuilder", "CPUAdamBuilder")


def extensions_root() -> Path:
    """Where torch keeps JIT-built extensions: TORCH_EXTENSIONS_DIR, or its default root."""
    from torch.utils.cpp_extension import get_default_build_root

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())


def stale_locks(root: Path, max_age_s: float = STALE_LOCK_AGE_S, now: float | None = None) -> list[Path]:
    """The extension build locks under `root` older than `max_age_s`: `<op>/lock` below
    TORCH_EXTENSIONS_DIR, `<python>_<device>/<op>/lock` below torch's default root."""
    now = time.time() if now is None else now
    if not root.is_dir():
        return []
    locks = [*root.glob("*/lock"), *root.glob("*/*/lock")]
    return sorted(lock for lock in locks if now - lock.stat().st_mtime > max_age_s)


def clear_stale_locks(root: Path | None = None, max_age_s: float = STALE_LOCK_AGE_S) -> list[Path]:
    """Remove stale build locks (see the module docstring); return what was removed."""
    try:
        root = extensions_root() if root is None else root
    except Exception as error:  # no torch build directory to look at: nothing to clear
        log.debug("no torch extensions directory: %s", error)
        return []
    removed = []
    for lock in stale_locks(root, max_age_s):
        age_min = (time.time() - lock.stat().st_mtime) / 60
        log.warning("removing a stale torch extension build lock %s (%.0f min old; its holder died)", lock, age_min)
        lock.unlink(missing_ok=True)
        removed.append(lock)
    return removed


def build_cpu_ops() -> list[str]:
    """Build (or find built) DeepSpeed's CPU ops in this process; return the names built."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.accelerator import get_accelerator

    built = []
    for name in CPU_OPS:
        builder = get_accelerator().create_op_builder(name)
        if builder is not None and builder.is_compatible():
            builder.load(verbose=False)
            built.append(builder.absolute_name())
    return built


def main() -> None:
    import torch

    clear_stale_locks()
    if torch.cuda.is_available():  # CPU Adam (ZeRO offload) ahead; other CUDA ops build on first use
        try:
            from deepspeed.ops.op_builder import CPUAdamBuilder

            CPUAdamBuilder().load(verbose=False)
            print(f"extensions: built CPU Adam for the GPU build ({extensions_root()})")
        except Exception as error:  # not fatal here: a job without optimizer offload does not need it
            print(f"extensions: CPU Adam not built ahead ({error}); it builds on first use")
        return
    started = time.time()
    names = build_cpu_ops()
    print(f"extensions: built {', '.join(names) or 'nothing'} in {time.time() - started:.0f} s ({extensions_root()})")


if __name__ == "__main__":
    main()
