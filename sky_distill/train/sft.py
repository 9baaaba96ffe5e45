"""The SFT recipe, run by every rank: data, model, DeepSpeed engine, loop, checkpoint, export.

The loss of a step is the mean token cross-entropy over the response tokens of the whole
global batch (all micro batches on all ranks), so packing, accumulation and world size do
not change what is optimised. Every rank computes the same batch schedule from (seed, step),
so resuming at a global step resumes at the exact data position.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from array import array
from pathlib import Path
from typing import Any

import torch

from sky_distill.config import TrainConfig
from sky_distill.errors import SkyDistillError
from sky_distill.records import repair_torn_tail
from sky_distill.runs import mark_complete, write_json_atomic
from sky_distill.train import checkpoint
from sky_distill.train.data import PackedRow
from sky_distill.train.dataset import DataReport, load_sft_examples
from sky_distill.train.distributed import DistInfo, barrier, init_distributed
from sky_distill.train.job import (
    TrainJob,
    render_deepspeed_config,
    resolve_precision,
    uses_optimizer_offload,
    zero_stage,
)
from sky_distill.train.losses import use_fused_loss
from sky_distill.train.preemption import PREEMPTED_FILE, StopRequest
from sky_distill.train.schedule import TrainingSchedule, plan_batches
from sky_distill.train.step import build_step_loss, micro_batches, train_step
from sky_distill.train.templates import apply_chat_template_choice, end_of_turn_ids
from sky_distill.train.throughput import ThroughputSummary, ThroughputWindow, peak_tflops

log = logging.getLogger(__name__)


class NoTrainingDataError(SkyDistillError, ValueError):
    """Not one usable example in the training files."""


def data_fingerprint(rows: list[PackedRow]) -> str:
    """Identifies the packed rows (their tokens and labels), so a resume cannot silently switch data."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(b"row")
        for example in row.examples:
            digest.update(len(example).to_bytes(8, "little"))
            digest.update(array("q", example.input_ids).tobytes() + array("q", example.labels).tobytes())
    return digest.hexdigest()[:16]


def _trim_metrics(metrics_file: Path, before_step: int) -> None:
    """On resume, forget metrics of steps that will be trained again (and a line torn by a kill)."""
    if not metrics_file.exists():
        return
    repair_torn_tail(metrics_file)
    kept = [line for line in metrics_file.read_text().splitlines() if line and json.loads(line)["step"] <= before_step]
    metrics_file.write_text("".join(line + "\n" for line in kept))


def prepare_data(job: TrainJob, tokenizer: Any, teacher_topk: dict | None = None) -> tuple[list, DataReport, set[int]]:
    """Encode and check the SFT files (with their stored teacher rows, if given); the same on every rank."""
    train = job.train
    stops = end_of_turn_ids(tokenizer)
    examples, report = load_sft_examples(
        job.data_files, tokenizer, train.max_seq_len, train.overlong, stops, teacher_topk
    )
    if not examples:
        raise NoTrainingDataError(f"no usable training examples in {job.data_files}: {report.errors[:3]}")
    learned_stops = {example.labels[-1] for example in examples if not example.truncated_tokens} & stops
    return examples, report, learned_stops


def load_teacher_signal(job: TrainJob, tokenizer: Any) -> dict | None:
    """Check the teacher's tokenizer against the student's; read the stored top-k rows (offline)."""
    from transformers import AutoTokenizer

    from sky_distill.train.dataset import open_teacher_rows
    from sky_distill.train.teacher_signal import check_tokenizers

    distill = job.train.distill
    if distill.teacher_path:
        check_tokenizers(tokenizer, AutoTokenizer.from_pretrained(distill.teacher_path), distill.teacher_path)
    else:
        log.warning("train.distill.teacher_path is not set: the teacher's tokenizer is not checked")
    if distill.teacher != "offline" or distill.kd_weight == 0:
        return None
    topk = open_teacher_rows(job.teacher_topk_dirs, job.data_files, Path(job.output_dir) / "teacher_rows")
    if not topk:
        raise NoTrainingDataError(f"no stored teacher top-k log-probs in {job.teacher_topk_dirs}")
    return topk


def load_examples(job: TrainJob, tokenizer: Any) -> tuple[list, DataReport, set[int]]:
    """The encoded SFT records (with stored teacher rows for offline distillation), or the scored
    samples of an on-policy round (`on_policy_data.py`)."""
    if job.train.loss == "on_policy":
        from sky_distill.train.on_policy_data import load_scored_examples

        train = job.train
        return load_scored_examples(job.data_files, tokenizer, train.max_seq_len, train.on_policy.verifier)
    teacher_topk = load_teacher_signal(job, tokenizer) if job.train.loss == "distill" else None
    return prepare_data(job, tokenizer, teacher_topk)


def log_data_plan(report: DataReport, num_examples: int, batches: TrainingSchedule, train: TrainConfig) -> None:
    plan = batches.plan
    log.info("data: %s", report.summary_line())
    log.info(
        "%d examples in %d rows (%s), %d steps; global batch %d %s = %d rows = micro %d x accumulation %d x world %d",
        num_examples,
        len(batches.rows),
        "packed" if train.packing else "one example per row",
        batches.num_steps,
        train.global_batch_size,
        train.batch_unit,
        plan.global_batch_size,
        plan.micro_batch_size,
        plan.gradient_accumulation_steps,
        plan.world_size,
    )
    for error in report.errors:
        log.warning("rejected training record: %s", error)
    for cut in report.truncated:
        log.warning("truncated training record: %s", cut)


def run(job: TrainJob) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from sky_distill.log import setup_logging
    from sky_distill.tracking import Tracker

    train = job.train
    output_dir = Path(job.output_dir)
    stop = StopRequest(output_dir).install()  # first: a signal during start-up is kept, not lost
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")  # once per collective
    dist: DistInfo = init_distributed(train.num_threads)
    setup_logging(dist.rank)
    torch.manual_seed(train.seed)
    if dist.is_main:
        (output_dir / PREEMPTED_FILE).unlink(missing_ok=True)

    # Data: every rank encodes and packs the same rows in the same order.
    tokenizer = apply_chat_template_choice(AutoTokenizer.from_pretrained(train.init), train.chat_template)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    distill = train.distill if train.loss == "distill" else None
    examples, report, learned_stops = load_examples(job, tokenizer)
    batches = plan_batches(examples, train, dist.world_size)  # train.batch_unit: rows or examples per step
    rows, plan, schedule, num_steps = batches.rows, batches.plan, batches.schedule, batches.num_steps
    row_target_tokens = [row.num_target_tokens for row in rows]
    log_data_plan(report, len(examples), batches, train)

    # Model and engine.
    import deepspeed

    from sky_distill.train.model import count_parameters, flop_parameters, load_model, select_attention
    from sky_distill.train.optim import build_optimizer

    cuda = torch.cuda.is_available()
    precision = resolve_precision(train.precision, cuda, cuda and torch.cuda.is_bf16_supported())
    ds_config = render_deepspeed_config(train, job.zero, plan, precision)
    attention = select_attention(train.attn_implementation, cuda, train.packing)
    teacher = None
    if distill and distill.teacher == "online":  # before the student: ZeRO-3 would partition it too
        from sky_distill.train.distill import load_teacher
        from sky_distill.train.model import DTYPES

        teacher = load_teacher(distill.teacher_path, DTYPES[precision], dist.device)
    model, _ds_config_alive = load_model(
        train.init, precision, attention, ds_config, train.gradient_checkpointing, train.liger_kernel
    )
    if distill and distill.features.weight > 0:
        from sky_distill.train.distill import attach_projections

        attach_projections(model, teacher.config.hidden_size, distill.features.layers)
    num_params, num_flop_params = count_parameters(model), flop_parameters(model)
    optimizer, make_scheduler = build_optimizer(model, train, num_steps, uses_optimizer_offload(job.zero))
    engine, _, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=make_scheduler, config=ds_config
    )
    loss_fn = build_step_loss(train, use_fused_loss(train.fused_loss, engine.module.config.vocab_size), teacher)
    padding_free = train.packing and attention in ("flash_attention_2", "sdpa_varlen")  # one row per micro batch

    checkpoint_dir = output_dir / "checkpoints"
    identity = {"world_size": dist.world_size, "data_fingerprint": data_fingerprint(rows)}
    if dist.is_main:
        for name in checkpoint.remove_incomplete(checkpoint_dir):
            log.warning("removed the incomplete checkpoint %s (a save cut short)", name)
    barrier()
    start_step = checkpoint.resume(engine, checkpoint_dir, dist.rank, identity)
    last_saved = start_step if start_step else None
    metrics_file = output_dir / "metrics.jsonl"
    tracker = None
    if dist.is_main:
        _trim_metrics(metrics_file, start_step)
        write_json_atomic(output_dir / "data_report.json", report.as_dict())
        tracker = Tracker(metrics_file, job.logger, job.model_dump(mode="json"), output_dir)

    # The loop.
    from tqdm import tqdm

    config = engine.module.config
    flop_model = (num_flop_params, config.num_hidden_layers, config.hidden_size)
    peak = peak_tflops(train.peak_tflops)
    engine.train()
    if dist.device.type == "cpu":
        log.info("%d CPU threads per rank", torch.get_num_threads())
    progress = tqdm(
        range(start_step, num_steps),
        desc=f"train {train.name}",
        disable=not dist.is_main,
        initial=start_step,
        total=num_steps,
    )
    window, throughput = ThroughputWindow(), ThroughputSummary()
    last_loss = float("nan")
    preempted_at = None
    completed = start_step
    for step in progress:
        step_target_tokens = sum(row_target_tokens[index] for index in schedule.step_rows(step))
        groups = schedule.micro_batches(step, dist.rank)
        micro = micro_batches(rows, groups, tokenizer.pad_token_id, train.packing, padding_free, dist.device, loss_fn)
        sums = train_step(
            engine, loss_fn, micro, step_target_tokens, plan.world_size, flop_model, stop.requested(), dist.device
        )
        last_loss = sums.loss / step_target_tokens
        completed = step + 1
        window.add(sums.tokens, sums.computed, sums.flops)
        if tracker and (completed % train.log_every == 0 or completed == num_steps or sums.stop_requested):
            grad_norm = engine.get_global_grad_norm()
            speed = window.close(dist.device, dist.world_size, peak, throughput)
            tracker.log(
                {
                    "train/loss": last_loss,
                    **{f"train/loss/{name}": value / step_target_tokens for name, value in sums.parts.items()},
                    "train/lr": scheduler.get_last_lr()[0],
                    "train/grad_norm": float(grad_norm) if grad_norm is not None else None,
                    "train/epoch": schedule.epoch(completed),
                    "train/target_tokens": step_target_tokens,
                    **speed,
                },
                step=completed,
            )
            progress.set_postfix(loss=f"{last_loss:.4f}")
        if sums.stop_requested and completed < num_steps:
            preempted_at = completed
            break
        if train.save_every and completed % train.save_every == 0 and completed < num_steps:
            checkpoint.save(engine, checkpoint_dir, completed, dist.rank, train.keep_last, identity)
            last_saved = completed

    if preempted_at is not None:
        if last_saved != preempted_at:
            checkpoint.save(engine, checkpoint_dir, preempted_at, dist.rank, train.keep_last, identity)
        if dist.is_main:
            write_json_atomic(output_dir / PREEMPTED_FILE, {"step": preempted_at, "signal": stop.signal_name})
            tracker.finish()
        log.warning(
            "stopped at step %d of %d (%s); checkpoint saved, run again to resume",
            preempted_at,
            num_steps,
            stop.signal_name,
        )
        barrier()
        return {"preempted": True, "step": preempted_at, "steps": num_steps}

    # Export.
    final_dir = checkpoint.export_hf_model(engine, tokenizer, output_dir / "final", dist.rank, sorted(learned_stops))
    summary = {
        "name": train.name,
        "model_dir": str(final_dir),
        "steps": num_steps,
        "resumed_from": start_step,
        "final_loss": last_loss,
        "world_size": dist.world_size,
        "threads_per_rank": torch.get_num_threads(),
        "global_batch_size": plan.global_batch_size,
        "batch_unit": train.batch_unit,
        "examples_per_step": train.global_batch_size if train.batch_unit == "examples" else None,
        "micro_batch_size": plan.micro_batch_size,
        "gradient_accumulation_steps": plan.gradient_accumulation_steps,
        "rows": len(rows),
        "packing": train.packing,
        "precision": precision,
        "attention": attention,
        "zero_stage": zero_stage(job.zero),
        "zero": job.zero,
        "parameters": num_params,
        **throughput.summary(dist.world_size, peak),
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
