"""Sharding for SLURM arrays: shard i of N by a stable hash of the problem id. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sky_distill.records import Problem


def shard_of(problem_id: str, shard_count: int) -> int:
    digest = hashlib.blake2b(problem_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shard_count


def select_shard(problems: Sequence[Problem], shard_index: int, shard_count: int) -> list[Problem]:
    return [problem for problem in problems if shard_of(problem.id, shard_count) == shard_index]


def shard_name(shard_index: int, shard_count: int) -> str:
    return f"shard-{shard_index:05d}-of-{shard_count:05d}"
