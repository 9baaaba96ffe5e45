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
import time
import warnings
from array import array
from pathlib import Path
from typing import Any

import torch

from sky_distill.errors import SkyDistillError
from sky_distill.records import repair_torn_tail
from sky_distill.runs import mark_complete, write_json_atomic
from sky_distill.train import checkpoint
from sky_distill.train.data import PackedRow, collate_rows, padding_fraction
from sky_distill.train.dataset import DataReport, load_sft_examples
from sky_distill.train.distributed import DistInfo, all_reduce_sums, barrier, init_distributed
from sky_distill.train.job import (
    TrainJob,
    render_deepspeed_config,
    resolve_precision,
    uses_optimizer_offload,
    zero_stage,
)
from sky_distill.train.losses import build_loss, use_fused_loss
from sky_distill.train.preemption import PREEMPTED_FILE, StopRequest
from sky_distill.train.schedule import plan_batches
from sky_distill.train.templates import apply_chat_template_choice, end_of_turn_ids
from sky_distill.train.throughput import ThroughputSummary, memory_stats, mfu, peak_tflops, step_flops

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
    teacher_topk = load_teacher_signal(job, tokenizer) if distill else None
    examples, report, learned_stops = prepare_data(job, tokenizer, teacher_topk)
    batches = plan_batches(examples, train, dist.world_size)  # train.batch_unit: rows or examples per step
    rows, plan, schedule, num_steps = batches.rows, batches.plan, batches.schedule, batches.num_steps
    row_target_tokens = [row.num_target_tokens for row in rows]
    log.info("data: %s", report.summary_line())
    log.info(
        "%d examples in %d rows (%s), %d steps; global batch %d %s = %d rows = micro %d x accumulation %d x world %d",
        len(examples),
        len(rows),
        "packed" if train.packing else "one example per row",
        num_steps,
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
    fused = use_fused_loss(train.fused_loss, engine.module.config.vocab_size)
    if distill:
        from sky_distill.train.distill import DistillLoss

        loss_fn = DistillLoss(distill, teacher, fused)
    else:
        loss_fn = build_loss(train.loss, fused)
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
    window = {"tokens": 0.0, "computed": 0.0, "flops": 0.0, "start": time.perf_counter()}
    last_loss = float("nan")
    throughput = ThroughputSummary()
    preempted_at = None
    completed = start_step
    for step in progress:
        rows_of_step = schedule.step_rows(step)
        step_target_tokens = sum(row_target_tokens[index] for index in rows_of_step)
        local = {"loss": 0.0, "tokens": 0, "computed": 0, "flops": 0.0}
        parts: dict[str, float] = {}
        for micro_rows in schedule.micro_batches(step, dist.rank):
            batch_rows = [rows[index] for index in micro_rows]
            batch = collate_rows(batch_rows, tokenizer.pad_token_id, train.packing, padding_free)
            lengths = [len(example) for row in batch_rows for example in row.examples]
            local["tokens"] += sum(lengths)
            local["computed"] += int(batch["input_ids"].numel())
            local["flops"] += step_flops(num_flop_params, config.num_hidden_layers, config.hidden_size, lengths)
            batch = {key: value.to(dist.device) for key, value in batch.items()}
            sums = loss_fn(engine, batch)
            # DeepSpeed averages gradients over ranks: scale so the result is sum / global targets.
            engine.backward(sums.total * plan.world_size / step_target_tokens, scale_wrt_gas=False)
            engine.step()
            local["loss"] += float(sums.total.detach())
            for name, value in sums.parts.items():
                parts[name] = parts.get(name, 0.0) + float(value)
        part_names = sorted(parts)
        loss_sum, tokens, computed, flops, stops, *part_sums = all_reduce_sums(
            [local["loss"], local["tokens"], local["computed"], local["flops"], float(stop.requested())]
            + [parts[name] for name in part_names],
            dist.device,
        )
        last_loss = loss_sum / step_target_tokens
        completed = step + 1
        window["tokens"] += tokens
        window["computed"] += computed
        window["flops"] += flops
        if tracker and (completed % train.log_every == 0 or completed == num_steps or stops):
            elapsed = max(time.perf_counter() - window["start"], 1e-9)
            grad_norm = engine.get_global_grad_norm()
            memory = memory_stats(dist.device)
            throughput.add(window["tokens"], window["flops"], elapsed, memory)
            tracker.log(
                {
                    "train/loss": last_loss,
                    **{f"train/loss/{name}": value / step_target_tokens for name, value in zip(part_names, part_sums)},
                    "train/lr": scheduler.get_last_lr()[0],
                    "train/grad_norm": float(grad_norm) if grad_norm is not None else None,
                    "train/epoch": schedule.epoch(completed),
                    "train/tokens": window["tokens"],  # response and prompt tokens since the last log line
                    "train/tokens_per_s": window["tokens"] / elapsed,
                    "train/padding_fraction": padding_fraction([window["tokens"]], [window["computed"]]),
                    "train/mfu": mfu(window["flops"], elapsed, dist.world_size, peak),
                    "train/target_tokens": step_target_tokens,
                    **memory,
                },
                step=completed,
            )
            progress.set_postfix(loss=f"{last_loss:.4f}")
            window = {"tokens": 0.0, "computed": 0.0, "flops": 0.0, "start": time.perf_counter()}
        if stops and completed < num_steps:
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
