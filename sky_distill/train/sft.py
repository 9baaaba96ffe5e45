"""The SFT recipe, run by every rank: data, model, DeepSpeed engine, loop, checkpoint, export.

The loss of a step is the mean token cross-entropy over the response tokens of the whole
global batch (all micro batches on all ranks), so packing, accumulation and world size do
not change what is optimised.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sky_distill.runs import mark_complete, write_json_atomic
from sky_distill.train import checkpoint
from sky_distill.train.batching import BatchPlan, fit_micro_batch, rank_micro_batches, step_rows, total_steps
from sky_distill.train.data import IGNORE_INDEX, PackedRow, collate_packed, collate_padded, pack_examples
from sky_distill.train.dataset import load_sft_examples
from sky_distill.train.distributed import DistInfo, all_reduce_sum, barrier, init_distributed
from sky_distill.train.job import TrainJob, render_deepspeed_config, resolve_precision, zero_stage

log = logging.getLogger(__name__)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def build_rows(examples: list, packing: bool, max_seq_len: int) -> list[PackedRow]:
    if packing:
        return pack_examples(examples, max_seq_len)
    return [PackedRow(max_seq_len, [example]) for example in examples]


def collate(rows: list[PackedRow], pad_id: int, packing: bool) -> dict[str, torch.Tensor]:
    if packing:
        return collate_packed(rows, pad_id)
    return collate_padded([row.examples[0] for row in rows], pad_id)


def token_loss_sum(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed next-token cross-entropy over the labelled positions of a batch."""
    labels = batch.pop("labels")
    logits = model(**batch, use_cache=False).logits
    shifted_logits = logits[:, :-1].reshape(-1, logits.size(-1)).float()
    shifted_labels = labels[:, 1:].reshape(-1)
    return F.cross_entropy(shifted_logits, shifted_labels, ignore_index=IGNORE_INDEX, reduction="sum")


def select_attention(requested: str, cuda: bool) -> str:
    if requested != "auto":
        return requested
    if cuda:
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


def load_model(path: str, precision: str, attn_implementation: str, ds_config: dict, gradient_checkpointing: bool):
    """Load the student; under ZeRO-3 weights are partitioned as they load (HfDeepSpeedConfig)."""
    from transformers import AutoModelForCausalLM
    from transformers.integrations import HfDeepSpeedConfig

    keep_alive = HfDeepSpeedConfig(ds_config) if zero_stage(ds_config["zero_optimization"]) == 3 else None
    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[precision], attn_implementation=attn_implementation)
    model._sky_distill_ds_config = keep_alive  # HfDeepSpeedConfig must outlive loading
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    return model


def build_optimizer(model: Any, job: TrainJob, num_training_steps: int):
    from transformers import get_scheduler

    train = job.train
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim < 2 or "norm" in name.lower() else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=train.learning_rate, betas=(0.9, 0.95), eps=1e-8)
    scheduler_name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[train.lr_scheduler]
    warmup = math.ceil(train.warmup_ratio * num_training_steps)

    def make_scheduler(wrapped_optimizer):  # DeepSpeed calls this with its own (ZeRO) optimizer
        return get_scheduler(
            scheduler_name, wrapped_optimizer, num_warmup_steps=warmup, num_training_steps=num_training_steps
        )

    return optimizer, make_scheduler


def _trim_metrics(metrics_file: Path, before_step: int) -> None:
    """On resume, forget metrics of steps that will be trained again."""
    if not metrics_file.exists():
        return
    kept = [line for line in metrics_file.read_text().splitlines() if line and json.loads(line)["step"] < before_step]
    metrics_file.write_text("".join(line + "\n" for line in kept))


def run(job: TrainJob) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from sky_distill.log import setup_logging
    from sky_distill.tracking import Tracker

    train = job.train
    dist: DistInfo = init_distributed(train.num_threads)
    setup_logging(dist.rank)
    output_dir = Path(job.output_dir)
    torch.manual_seed(train.seed)

    # Data: every rank encodes and packs the same rows in the same order.
    tokenizer = AutoTokenizer.from_pretrained(train.init)
    examples, report = load_sft_examples(job.data_files, tokenizer, train.max_seq_len)
    if not examples:
        raise ValueError(f"no usable training examples in {job.data_files}: {report.errors[:3]}")
    rows = build_rows(examples, train.packing, train.max_seq_len)
    micro = fit_micro_batch(train.global_batch_size, train.micro_batch_size, dist.world_size)
    plan = BatchPlan(train.global_batch_size, micro, dist.world_size)
    num_steps = total_steps(len(rows), plan.global_batch_size, train.epochs, train.max_steps)
    row_target_tokens = [sum(example.num_target_tokens for example in row.examples) for row in rows]
    log.info(
        "data: %d records, %d kept, %d rejected, %d truncated; %d rows, %d steps, micro %d x accumulation %d x world %d",
        report.records,
        report.kept,
        report.rejected,
        report.truncated_examples,
        len(rows),
        num_steps,
        plan.micro_batch_size,
        plan.gradient_accumulation_steps,
        plan.world_size,
    )
    for error in report.errors:
        log.warning("rejected training record: %s", error)

    # Model and engine.
    import deepspeed

    precision = resolve_precision(
        train.precision, torch.cuda.is_available(), torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    )
    ds_config = render_deepspeed_config(train, job.zero, plan, precision)
    attention = select_attention(train.attn_implementation, torch.cuda.is_available())
    model = load_model(train.init, precision, attention, ds_config, train.gradient_checkpointing)
    optimizer, make_scheduler = build_optimizer(model, job, num_steps)
    engine, _, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=make_scheduler, config=ds_config
    )

    checkpoint_dir = output_dir / "checkpoints"
    start_step = checkpoint.resume(engine, checkpoint_dir, dist.rank)
    metrics_file = output_dir / "metrics.jsonl"
    tracker = None
    if dist.is_main:
        _trim_metrics(metrics_file, start_step)
        write_json_atomic(output_dir / "data_report.json", report.as_dict())
        tracker = Tracker(metrics_file, job.logger, job.model_dump(mode="json"), output_dir)

    # The loop.
    from tqdm import tqdm

    engine.train()
    progress = tqdm(
        range(start_step, num_steps),
        desc=f"train {train.name}",
        disable=not dist.is_main,
        initial=start_step,
        total=num_steps,
    )
    window_tokens, window_start = 0, time.perf_counter()
    last_loss = float("nan")
    for step in progress:
        rows_of_step = step_rows(len(rows), plan, train.seed, step)
        step_target_tokens = sum(row_target_tokens[index] for index in rows_of_step)
        local_loss, local_tokens = 0.0, 0
        for micro_rows in rank_micro_batches(rows_of_step, plan, dist.rank):
            batch = collate([rows[index] for index in micro_rows], tokenizer.pad_token_id, train.packing)
            local_tokens += int(batch["input_ids"].numel())
            batch = {key: value.to(dist.device) for key, value in batch.items()}
            loss_sum = token_loss_sum(engine, batch)
            engine.backward(loss_sum * plan.world_size / step_target_tokens, scale_wrt_gas=False)
            engine.step()
            local_loss += float(loss_sum.detach())
        last_loss = all_reduce_sum(local_loss, dist.device) / step_target_tokens
        window_tokens += int(all_reduce_sum(local_tokens, dist.device))
        completed = step + 1
        if tracker and (completed % train.log_every == 0 or completed == num_steps):
            elapsed = time.perf_counter() - window_start
            grad_norm = engine.get_global_grad_norm()
            tracker.log(
                {
                    "train/loss": last_loss,
                    "train/lr": scheduler.get_last_lr()[0],
                    "train/grad_norm": float(grad_norm) if grad_norm is not None else None,
                    "train/tokens_per_s": window_tokens / max(elapsed, 1e-9),
                    "train/epoch": completed * plan.global_batch_size / len(rows),
                },
                step=completed,
            )
            progress.set_postfix(loss=f"{last_loss:.4f}")
            window_tokens, window_start = 0, time.perf_counter()
        if train.save_every and completed % train.save_every == 0 and completed < num_steps:
            checkpoint.save(engine, checkpoint_dir, completed, dist.rank, train.keep_last)

    # Export.
    final_dir = checkpoint.export_hf_model(engine, tokenizer, output_dir / "final", dist.rank)
    summary = {
        "name": train.name,
        "model_dir": str(final_dir),
        "steps": num_steps,
        "final_loss": last_loss,
        "world_size": dist.world_size,
        "precision": precision,
        "zero_stage": zero_stage(job.zero),
        **report.as_dict(),
        "provenance": job.provenance,
    }
    if dist.is_main:
        write_json_atomic(final_dir / "provenance.json", {"trained_by": "sky-distill train", **summary})
        tracker.summary(summary)
        tracker.finish()
        mark_complete(output_dir, summary)
    barrier()
    return summary
