"""The pieces of one optimizer step that every training recipe shares: the loss, the micro
batches of a step, and the step itself (backward on every micro batch, then the all-reduced sums).

The step's loss is a sum over the micro batch's target tokens divided by the target tokens of
the whole global batch, so packing, accumulation and world size do not change what is optimised.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sky_distill.config import TrainConfig
from sky_distill.train.data import PackedRow, collate_rows
from sky_distill.train.distributed import all_reduce_sums
from sky_distill.train.losses import TokenLoss, build_loss
from sky_distill.train.throughput import step_flops


def build_step_loss(train: TrainConfig, fused: bool, teacher: Any | None = None) -> TokenLoss:
    """The `TokenLoss` that `train.loss` names: CE, the distillation mix, or the on-policy loss."""
    if train.loss == "distill":
        from sky_distill.train.distill import DistillLoss

        return DistillLoss(train.distill, teacher, fused)
    if train.loss == "on_policy":
        from sky_distill.train.opd_loss import OnPolicyLoss

        return OnPolicyLoss(train.on_policy, fused)
    return build_loss(train.loss, fused)


@dataclass
class MicroBatch:
    """A collated micro batch on its device, and the lengths of its sequences (for FLOPs)."""

    batch: dict[str, torch.Tensor]
    lengths: list[int]


def micro_batches(
    rows: Sequence[PackedRow],
    row_groups: list[list[int]],
    pad_id: int,
    packing: bool,
    padding_free: bool,
    device: torch.device,
    loss: TokenLoss,
) -> Iterator[MicroBatch]:
    """The micro batches of one rank's share of a step (`row_groups`: indices into `rows`).

    A loss that needs more per-token inputs than the labels (the on-policy loss: stored log-probs)
    adds them with its `collate(examples)`."""
    collate_extra = getattr(loss, "collate", None)
    for group in row_groups:
        batch_rows = [rows[index] for index in group]
        batch = collate_rows(batch_rows, pad_id, packing, padding_free)
        examples = [example for row in batch_rows for example in row.examples]
        if collate_extra is not None:
            batch |= collate_extra(examples)
        yield MicroBatch({key: value.to(device) for key, value in batch.items()}, [len(e) for e in examples])


@dataclass
class StepSums:
    """One global step, summed over micro batches and ranks."""

    loss: float
    tokens: float  # sequence tokens (prompt and response)
    computed: float  # positions computed, padding included
    flops: float
    stop_requested: bool
    parts: dict[str, float] = field(default_factory=dict)


def train_step(
    engine: Any,
    loss: TokenLoss,
    batches: Iterator[MicroBatch],
    step_target_tokens: int,
    world_size: int,
    flop_model: tuple[int, int, int],
    stop_requested: bool,
    device: torch.device,
) -> StepSums:
    """Forward and backward every micro batch (DeepSpeed steps the optimizer at the boundary);
    return the step's sums over every rank. `flop_model`: (parameters, layers, hidden size)."""
    local = {"loss": 0.0, "tokens": 0.0, "computed": 0.0, "flops": 0.0}
    parts: dict[str, float] = {}
    for micro in batches:
        local["tokens"] += sum(micro.lengths)
        local["computed"] += int(micro.batch["input_ids"].numel())
        local["flops"] += step_flops(*flop_model, micro.lengths)
        sums = loss(engine, micro.batch)
        # DeepSpeed averages gradients over ranks: scale so the result is sum / global targets.
        engine.backward(sums.total * world_size / step_target_tokens, scale_wrt_gas=False)
        engine.step()
        local["loss"] += float(sums.total.detach())
        for name, value in sums.parts.items():
            parts[name] = parts.get(name, 0.0) + float(value)
    names = sorted(parts)
    loss_sum, tokens, computed, flops, stops, *part_sums = all_reduce_sums(
        [local["loss"], local["tokens"], local["computed"], local["flops"], float(stop_requested)]
        + [parts[name] for name in names],
        device,
    )
    return StepSums(loss_sum, tokens, computed, flops, bool(stops), dict(zip(names, part_sums)))
