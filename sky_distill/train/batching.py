"""The batch schedule: which rows each rank trains on at each step. Pure and deterministic.

Every rank computes the same schedule from (seed, epoch), so a resumed run picks up at the
exact row where it stopped, and the loss of a global step can be normalised by the number of
target tokens in the whole global batch without any communication.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchPlan:
    """global batch = micro batch x gradient accumulation x world size (in rows)."""

    global_batch_size: int
    micro_batch_size: int
    world_size: int

    def __post_init__(self) -> None:
        per_step = self.micro_batch_size * self.world_size
        if self.global_batch_size % per_step:
            raise ValueError(
                f"train.global_batch_size {self.global_batch_size} must be a multiple of "
                f"micro_batch_size x world_size = {self.micro_batch_size} x {self.world_size}"
            )

    @property
    def gradient_accumulation_steps(self) -> int:
        return self.global_batch_size // (self.micro_batch_size * self.world_size)


def fit_micro_batch(global_batch_size: int, micro_batch_size: int, world_size: int) -> int:
    """The largest micro batch <= the requested one that divides the per-rank share of a step."""
    if global_batch_size % world_size:
        raise ValueError(f"train.global_batch_size {global_batch_size} is not divisible by world size {world_size}")
    per_rank = global_batch_size // world_size
    for size in range(min(micro_batch_size, per_rank), 0, -1):
        if per_rank % size == 0:
            return size
    return 1


def epoch_order(num_rows: int, seed: int, epoch: int) -> list[int]:
    """A permutation of range(num_rows) fixed by (seed, epoch), the same on every rank."""
    order = list(range(num_rows))
    random.Random(f"{seed}-{epoch}").shuffle(order)
    return order


def steps_per_epoch(num_rows: int, global_batch_size: int) -> int:
    return math.ceil(num_rows / global_batch_size)


def total_steps(num_rows: int, global_batch_size: int, epochs: float, max_steps: int | None) -> int:
    steps = math.ceil(steps_per_epoch(num_rows, global_batch_size) * epochs)
    return min(steps, max_steps) if max_steps else steps


def step_rows(num_rows: int, plan: BatchPlan, seed: int, global_step: int) -> list[int]:
    """The rows of one global step; the last step of an epoch wraps to the epoch's start."""
    per_epoch = steps_per_epoch(num_rows, plan.global_batch_size)
    epoch, step_in_epoch = divmod(global_step, per_epoch)
    order = epoch_order(num_rows, seed, epoch)
    start = step_in_epoch * plan.global_batch_size
    return [order[(start + offset) % num_rows] for offset in range(plan.global_batch_size)]


def rank_micro_batches(rows: list[int], plan: BatchPlan, rank: int) -> list[list[int]]:
    """This rank's share of a global step, cut into micro batches (interleaved across ranks)."""
    mine = rows[rank :: plan.world_size]
    size = plan.micro_batch_size
    return [mine[index : index + size] for index in range(0, len(mine), size)]
