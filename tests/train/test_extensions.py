"""Stale torch extension build locks: found by age at both layouts, and removed."""

import os
import time

from sky_distill.train.extensions import clear_stale_locks, stale_locks


def _lock(path, age_s):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_only_locks_older_than_any_build_are_stale_and_removed(tmp_path):
    old_default = _lock(tmp_path / "py311_cpu" / "deepspeed_shm_comm" / "lock", 3600)
    old_flat = _lock(tmp_path / "cpu_adam" / "lock", 3600)
    fresh = _lock(tmp_path / "py311_cpu" / "cpu_adam" / "lock", 10)
    assert stale_locks(tmp_path, max_age_s=900) == sorted([old_default, old_flat])
    assert clear_stale_locks(tmp_path, max_age_s=900) == sorted([old_default, old_flat])
    assert not old_default.exists() and not old_flat.exists() and fresh.exists()
    assert stale_locks(tmp_path / "missing") == []
