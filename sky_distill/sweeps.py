"""Run directories of `--multirun` sweeps: each job gets its own, named by its overrides.

Without this every job of a sweep would resolve the same `${paths.run_dir}` and write into the
same stage folders. A job's run directory is `<run_dir>/<its overrides>` (Hydra's
`hydra.job.override_dirname`, without the keys listed in conf/hydra/default.yaml), so a
re-launched sweep finds each job's outputs again and resumes it, whatever the job's number.
A sweep that sets `paths.run_dir` itself keeps it (e.g. to train several students on one
run's traces, each with its own `train.name`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

MAX_DIRNAME = 120
UNSAFE = re.compile(r"[^A-Za-z0-9._,=+@%-]+")


def sweep_dirname(override_dirname: str) -> str:
    """A single, safe path component for a job's overrides; long ones end in a hash of the whole."""
    name = UNSAFE.sub("_", override_dirname).strip("_.")
    if len(name) > MAX_DIRNAME:
        digest = hashlib.sha256(override_dirname.encode()).hexdigest()[:10]
        name = f"{name[: MAX_DIRNAME - 11]}-{digest}"
    return name


def sweep_run_dir(run_dir: str, override_dirname: str) -> str:
    """The run directory of one sweep job: `run_dir` itself when no override tells jobs apart."""
    name = sweep_dirname(override_dirname)
    return f"{run_dir.rstrip('/')}/{name}" if name else run_dir


def apply_sweep_run_dir(cfg: Any) -> str | None:
    """In a multirun job, point `paths.run_dir` at the job's own directory; return it (None otherwise)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN:
        return None
    if any(item.lstrip("+~").split("=", 1)[0] == "paths.run_dir" for item in hydra.overrides.task):
        return None
    run_dir = sweep_run_dir(str(cfg.paths.run_dir), hydra.job.override_dirname)
    with open_dict(cfg):
        cfg.paths.run_dir = run_dir
    return run_dir
