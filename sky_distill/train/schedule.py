"""The rows and batch schedule of a run, from its encoded examples and `train` config.

The one place `train.batch_unit` is read: `rows` packs the data once and counts packed rows per
step; `examples` counts examples per step, as published recipes do, and packs each step's own.
Every rank calls this with the same examples and gets the same schedule.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sky_distill.config import TrainConfig
from sky_distill.train.batching import BatchPlan, BatchSchedule, ExampleSchedule, fit_micro_batch, total_steps
from sky_distill.train.data import EncodedExample, PackedRow, pack_examples, rows_of, single_rows

log = logging.getLogger(__name__)


@dataclass
class TrainingSchedule:
    rows: list[PackedRow]  # what step_rows / micro_batches index
    plan: BatchPlan  # rows per step (DeepSpeed's batch keys)
    schedule: BatchSchedule | ExampleSchedule
    num_steps: int


def plan_batches(examples: Sequence[EncodedExample], train: TrainConfig, world_size: int) -> TrainingSchedule:
    if train.batch_unit == "examples":
        num_steps = total_steps(len(examples), train.global_batch_size, train.epochs, train.max_steps)
        schedule = ExampleSchedule(
            [len(example) for example in examples],
            train.global_batch_size,
            train.max_seq_len,
            train.micro_batch_size,
            world_size,
            train.seed,
            num_steps,
            train.packing,
        )
        rows = rows_of(examples, schedule.bins, train.max_seq_len)
        return TrainingSchedule(rows, schedule.plan, schedule, num_steps)
    rows = pack_examples(examples, train.max_seq_len) if train.packing else single_rows(examples, train.max_seq_len)
    micro = fit_micro_batch(train.global_batch_size, train.micro_batch_size, world_size)
    if micro != train.micro_batch_size:
        log.warning("micro batch %d -> %d: it must divide the per-rank share of a step", train.micro_batch_size, micro)
    plan = BatchPlan(train.global_batch_size, micro, world_size)
    schedule = BatchSchedule([row.length for row in rows], plan, train.seed, train.group_by_length)
    return TrainingSchedule(
        rows, plan, schedule, total_steps(len(rows), plan.global_batch_size, train.epochs, train.max_steps)
    )
