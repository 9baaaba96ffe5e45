"""The batch schedule: which rows each rank trains on at each step. Pure and deterministic.

Every rank computes the same schedule from (seed, epoch), so a resumed run picks up at the
exact row where it stopped, and the loss of a global step can be normalised by the number of
target tokens in the whole global batch without any communication.

Rows of a step are sorted by length before they are dealt to ranks and micro batches, so a
micro batch holds rows of similar length (little padding). `group_by_length` also groups
similar lengths across steps: the epoch's shuffled order is cut into mega-batches that are
sorted by length and dealt out as whole steps in shuffled order (like Hugging Face's
length-grouped sampler), the alternative to packing when examples must stay one per row.

`train.batch_unit` says what `global_batch_size` counts. `rows` (BatchSchedule): packed rows,
fixed before the schedule. `examples` (ExampleSchedule): a step takes that many examples, as
published recipes count them (Sky-T1: 96), and packs them into the same number of rows on every
step (so DeepSpeed's accumulation is fixed); the loss stays normalised by the step's target tokens.
"""

from __future__ import annotations

import bisect
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


# --- batch_unit: examples ------------------------------------------------------------------------


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices into `lengths` packed into bins of `capacity`: longest first, each into the fullest
    bin it fits in; bins come back in the order they were opened (deterministic)."""
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (free space, bin index)
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True):
        size = lengths[index]
        if size > capacity:
            raise ValueError(f"an example of {size} tokens exceeds the row capacity {capacity}")
        slot = bisect.bisect_left(free, (size, -1))
        if slot < len(free):
            space, target = free.pop(slot)
        else:
            bins.append([])
            space, target = capacity, len(bins) - 1
        bins[target].append(index)
        if space - size > 0:
            bisect.insort(free, (space - size, target))
    return bins


def pack_into_bins(lengths: Sequence[int], capacity: int, num_bins: int) -> list[list[int]]:
    """Indices packed into exactly `num_bins` non-empty bins, loads as even as they fit.

    Longest first into the least-loaded bin with room (balanced ranks); if that fails, best-fit
    bins split (a bin's shortest example into a new bin) until there are `num_bins`.
    """
    if not 0 < num_bins <= len(lengths):
        raise ValueError(f"cannot pack {len(lengths)} examples into {num_bins} non-empty rows")
    bins: list[list[int]] = [[] for _ in range(num_bins)]
    loads = [0] * num_bins
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True):
        fits = [b for b in range(num_bins) if loads[b] + lengths[index] <= capacity]
        if not fits:
            break
        target = min(fits, key=lambda b: (loads[b], b))
        bins[target].append(index)
        loads[target] += lengths[index]
    else:
        if all(bins):
            return bins
    bins = best_fit_decreasing(lengths, capacity)
    if len(bins) > num_bins:
        raise ValueError(f"{len(lengths)} examples need {len(bins)} rows of {capacity} tokens, more than {num_bins}")
    while len(bins) < num_bins:
        largest = max(range(len(bins)), key=lambda b: (len(bins[b]), -b))
        shortest = min(bins[largest], key=lambda i: (lengths[i], i))
        bins[largest].remove(shortest)
        bins.append([shortest])
    return bins


@dataclass
class ExampleSchedule:
    """batch_unit=examples: step s takes `examples_per_step` examples of the epoch's shuffled order
    (fixed by (seed, epoch); the last step of an epoch wraps to its start) and packs them into
    `rows_per_step` rows, the most any step needs, rounded up to micro batch x world size.

    `bins` lists every step's rows (example indices) in step order: row r of step s is
    bins[s * rows_per_step + r], so the (row-based) training loop indexes them like packed rows.
    """

    lengths: Sequence[int]  # tokens per example
    examples_per_step: int
    capacity: int  # tokens per row (max_seq_len)
    micro_batch_size: int
    world_size: int
    seed: int
    num_steps: int
    packing: bool = True
    bins: list[list[int]] = field(init=False, repr=False)
    plan: BatchPlan = field(init=False)

    def __post_init__(self) -> None:
        if self.examples_per_step < self.world_size * self.micro_batch_size:
            raise ValueError(
                f"train.global_batch_size {self.examples_per_step} examples is fewer than micro_batch_size x "
                f"world_size = {self.micro_batch_size} x {self.world_size} rows"
            )
        steps = [self.step_examples(step) for step in range(self.num_steps)]
        unit = self.micro_batch_size * self.world_size
        if self.packing:
            needed = max(len(best_fit_decreasing([self.lengths[i] for i in ex], self.capacity)) for ex in steps)
            rows = min(math.ceil(needed / unit) * unit, self.examples_per_step // unit * unit)
        else:
            rows = self.examples_per_step
            if rows % unit:
                raise ValueError(
                    f"train.global_batch_size {rows} examples (one per row without packing) must be a multiple "
                    f"of micro_batch_size x world_size = {self.micro_batch_size} x {self.world_size}"
                )
        self.plan = BatchPlan(rows, self.micro_batch_size, self.world_size)
        self.bins = []
        for examples in steps:
            packed = pack_into_bins([self.lengths[i] for i in examples], self.capacity, rows)
            self.bins += [[examples[i] for i in row] for row in packed]

    @property
    def num_examples(self) -> int:
        return len(self.lengths)

    @property
    def rows_per_step(self) -> int:
        return self.plan.global_batch_size

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.num_examples, self.examples_per_step)

    def step_examples(self, global_step: int) -> list[int]:
        epoch, step_in_epoch = divmod(global_step, self.steps_per_epoch)
        order = epoch_order(self.num_examples, self.seed, epoch)
        start = step_in_epoch * self.examples_per_step
        return [order[(start + offset) % self.num_examples] for offset in range(self.examples_per_step)]

    def step_rows(self, global_step: int) -> list[int]:
        """Indices into `bins` of one step's rows, longest first."""
        first = global_step * self.rows_per_step
        rows = range(first, first + self.rows_per_step)
        return sorted(rows, key=lambda row: -sum(self.lengths[i] for i in self.bins[row]))

    def micro_batches(self, global_step: int, rank: int) -> list[list[int]]:
        return rank_micro_batches(self.step_rows(global_step), self.plan, rank)

    def epoch(self, global_step: int) -> float:
        return global_step * self.examples_per_step / self.num_examples
