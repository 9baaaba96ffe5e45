"""The batch schedule: which rows each rank trains on at each step. Pure and deterministic.

Every rank computes the same schedule from (seed, epoch), so a resumed run picks up at the
exact row where it stopped, and the loss of a global step can be normalised by the number of
target tokens in the whole global batch without any communication.

Rows of a step are sorted by length before they are dealt to ranks and micro batches, so a
micro batch holds rows of similar length (little padding). `group_by_length` also groups
similar lengths across steps: the epoch's shuffled order is cut into mega-batches that are
sorted by length and dealt out as whole steps in shuffled order (like Hugging Face's
length-grouped sampler), the alternative to packing when examples must stay one per row.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

MEGA_BATCH_STEPS = 16  # steps per length-sorted group under group_by_length


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


def length_grouped_order(lengths: Sequence[int], seed: int, epoch: int, global_batch_size: int) -> list[int]:
    """The epoch's shuffled order, regrouped so each step holds rows of similar length."""
    order = epoch_order(len(lengths), seed, epoch)
    group = global_batch_size * MEGA_BATCH_STEPS
    grouped: list[int] = []
    for start in range(0, len(order), group):
        grouped += sorted(order[start : start + group], key=lambda row: -lengths[row])
    steps = [grouped[start : start + global_batch_size] for start in range(0, len(grouped), global_batch_size)]
    random.Random(f"{seed}-{epoch}-steps").shuffle(steps)
    return [row for step in steps for row in step]


def steps_per_epoch(num_rows: int, global_batch_size: int) -> int:
    return math.ceil(num_rows / global_batch_size)


def total_steps(num_rows: int, global_batch_size: int, epochs: float, max_steps: int | None) -> int:
    steps = math.ceil(steps_per_epoch(num_rows, global_batch_size) * epochs)
    return min(steps, max_steps) if max_steps else steps


def step_rows(num_rows: int, plan: BatchPlan, seed: int, global_step: int) -> list[int]:
    """The rows of one global step; the last step of an epoch wraps to the epoch's start."""
    return BatchSchedule([1] * num_rows, plan, seed).step_rows(global_step)


def rank_micro_batches(rows: list[int], plan: BatchPlan, rank: int) -> list[list[int]]:
    """This rank's share of a global step, cut into micro batches (interleaved across ranks)."""
    mine = rows[rank :: plan.world_size]
    size = plan.micro_batch_size
    return [mine[index : index + size] for index in range(0, len(mine), size)]


@dataclass
class BatchSchedule:
    """The whole schedule of a run: rows of each step, and each rank's micro batches."""

    lengths: Sequence[int]  # tokens per row
    plan: BatchPlan
    seed: int
    group_by_length: bool = False
    _cached: tuple[int, list[int]] | None = field(default=None, repr=False)

    @property
    def num_rows(self) -> int:
        return len(self.lengths)

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.num_rows, self.plan.global_batch_size)

    def order(self, epoch: int) -> list[int]:
        if self._cached is None or self._cached[0] != epoch:
            if self.group_by_length:
                order = length_grouped_order(self.lengths, self.seed, epoch, self.plan.global_batch_size)
            else:
                order = epoch_order(self.num_rows, self.seed, epoch)
            self._cached = (epoch, order)
        return self._cached[1]

    def step_rows(self, global_step: int) -> list[int]:
        """The rows of one global step, longest first; the last step of an epoch wraps around."""
        epoch, step_in_epoch = divmod(global_step, self.steps_per_epoch)
        order = self.order(epoch)
        start = step_in_epoch * self.plan.global_batch_size
        rows = [order[(start + offset) % self.num_rows] for offset in range(self.plan.global_batch_size)]
        return sorted(rows, key=lambda row: -self.lengths[row])

    def micro_batches(self, global_step: int, rank: int) -> list[list[int]]:
        return rank_micro_batches(self.step_rows(global_step), self.plan, rank)

    def epoch(self, global_step: int) -> float:
        return global_step * self.plan.global_batch_size / self.num_rows
