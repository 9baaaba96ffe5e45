"""The SFT recipe under real DeepSpeed on 2 CPU ranks: every ZeRO config trains the same curve;
a run killed with SIGKILL, or stopped by SIGUSR1/SIGTERM, resumes exactly; the export reloads."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM, AutoTokenizer

from sky_distill.config import stage_config
from sky_distill.records import Message, SFTExample, write_jsonl
from sky_distill.runs import completion, mark_complete
from sky_distill.tasks.arithmetic import ArithmeticSpec, make_problems, reference_response
from sky_distill.tracking import read_metrics
from sky_distill.train.checkpoint import saved_steps
from sky_distill.train.job import TrainJob
from sky_distill.train.launch import launch
from sky_distill.train.preemption import PREEMPTED_FILE, REQUEUE_EXIT_CODE, descendants
from tests.conftest import REPO, compose_config

pytestmark = pytest.mark.slow

STEPS = 30
SAVE_EVERY = 5
RESUME_RTOL = 1e-5  # resumed vs uninterrupted loss, per step (fp32 on CPU)
TRAIN_OVERRIDES = [
    "train=tiny",
    f"train.max_steps={STEPS}",
    "train.learning_rate=3e-3",
    "train.warmup_ratio=0.1",
    "train.lr_scheduler=cosine",
    "train.global_batch_size=8",
    "train.micro_batch_size=2",
    "train.max_seq_len=256",
    "train.packing=true",
    "train.log_every=1",
    f"train.save_every={SAVE_EVERY}",
    "train.keep_last=2",
    "train.num_procs=2",
]


@pytest.fixture(scope="module")
def sft_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sft") / "verified.jsonl"
    problems = make_problems(ArithmeticSpec(), "train", 96)
    examples = [
        SFTExample(
            messages=[
                Message(role="user", content=p.problem),
                Message(role="assistant", content=reference_response(p, "worked")),
            ]
        )
        for p in problems
    ]
    write_jsonl(path, examples)
    return path


def make_job(tiny_model_dir, sft_file, output_dir, deepspeed="zero2", extra=(), logger=None) -> TrainJob:
    """The job `sky-distill train` would build from these overrides (the same Hydra composition)."""
    cfg = compose_config(
        [*TRAIN_OVERRIDES, f"train.init={tiny_model_dir}", f"deepspeed={deepspeed}", *extra], stage="train"
    )
    typed = stage_config(cfg, "train")
    return TrainJob(
        train=typed["train"],
        zero=OmegaConf.to_container(cfg.deepspeed.zero_optimization, resolve=True),
        data_files=[str(sft_file)],
        output_dir=str(output_dir),
        logger=logger or typed["logger"],
    )


def losses(output_dir) -> list[float]:
    rows = read_metrics(Path(output_dir) / "metrics.jsonl")
    assert [row["step"] for row in rows] == list(range(1, STEPS + 1)), "each step logged exactly once"
    return [row["train/loss"] for row in rows]


def assert_same_curve(actual, expected, rtol):
    worst = max(abs(a - e) / abs(e) for a, e in zip(actual, expected))
    print(f"largest relative loss difference {worst:.2e} (allowed {rtol:.0e})")
    assert worst <= rtol, f"largest relative difference {worst:.2e}"


def final_weights(output_dir):
    return AutoModelForCausalLM.from_pretrained(Path(output_dir) / "final", dtype=torch.float32).state_dict()


@pytest.fixture(scope="module")
def reference(tiny_model_dir, sft_file, tmp_path_factory):
    """Uninterrupted runs per ZeRO stage (ZeRO-3 also logs to an offline wandb run)."""
    from sky_distill.config import LoggerConfig

    runs = {}
    for stage in (2, 3):
        output_dir = tmp_path_factory.mktemp(f"reference-zero{stage}")
        logger = (
            LoggerConfig(backend="wandb", mode="offline", project="sky-distill-tests", run_name="ref")
            if stage == 3
            else None
        )
        launch(make_job(tiny_model_dir, sft_file, output_dir, f"zero{stage}", logger=logger))
        runs[stage] = output_dir
    return runs


def test_uninterrupted_runs_train_log_and_export(reference, tiny_model_dir):
    for stage, output_dir in reference.items():
        summary = completion(output_dir)
        assert summary["world_size"] == 2 and summary["zero_stage"] == stage and summary["resumed_from"] == 0
        assert summary["gradient_accumulation_steps"] == 2 and summary["train/data/kept"] == 96
        curve = losses(output_dir)
        assert curve[-1] < 0.5 * curve[0], curve
        row = read_metrics(output_dir / "metrics.jsonl")[-1]
        assert row["train/tokens_per_s"] > 0 and 0 <= row["train/padding_fraction"] < 0.5
        assert row["train/mem/rss_peak_gib"] > 0 and row["train/lr"] == pytest.approx(0.0, abs=1e-9)
        assert saved_steps(output_dir / "checkpoints") == [20, 25]  # keep_last=2; none at the end
        provenance = json.loads((output_dir / "final" / "provenance.json").read_text())
        assert provenance["trained_by"] == "sky-distill train" and provenance["steps"] == STEPS
    # ZeRO-3's export, gathered from both ranks' shards, is the model ZeRO-2 trained
    zero2, zero3 = final_weights(reference[2]), final_weights(reference[3])
    for name, tensor in zero2.items():
        torch.testing.assert_close(zero3[name], tensor, rtol=1e-4, atol=1e-5)
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert any(not torch.equal(zero3[name], original[name]) for name in original)
    wandb_runs = list((reference[3] / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1 and list(wandb_runs[0].glob("*.wandb"))


def test_the_export_generates_and_stops_at_the_learned_eos(reference):
    final = reference[3] / "final"
    model = AutoModelForCausalLM.from_pretrained(final)
    tokenizer = AutoTokenizer.from_pretrained(final)
    assert tokenizer.eos_token_id in [
        model.generation_config.eos_token_id,
        *list(model.generation_config.eos_token_id or []),
    ]
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Compute 12 + 34."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]


def test_zero2_and_zero3_follow_the_same_curve(reference):
    assert_same_curve(losses(reference[3]), losses(reference[2]), 1e-5)


def start_detached(command, env=None):
    return subprocess.Popen(
        command, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def kill_tree(process):
    """SIGKILL the launcher, torchrun and every rank: a node dying, not a polite stop."""
    for pid in [process.pid, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def wait_for(condition, process, timeout=300):
    deadline = time.time() + timeout
    while not condition():
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace")[-3000:]
            pytest.fail(f"the run ended (status {process.returncode}) before the condition held:\n{output}")
        if time.time() > deadline:
            kill_tree(process)
            pytest.fail("timed out")
        time.sleep(0.02)


@pytest.mark.parametrize("stage", [2, 3])
def test_a_killed_run_resumes_exactly(stage, reference, tiny_model_dir, sft_file, tmp_path):
    job = make_job(tiny_model_dir, sft_file, tmp_path / "out", f"zero{stage}")
    job_file = job.write()
    process = start_detached([sys.executable, "-m", "sky_distill.train.launch", str(job_file)])
    wait_for(lambda: 10 in saved_steps(tmp_path / "out" / "checkpoints"), process)
    kill_tree(process)
    assert completion(tmp_path / "out") is None and not (tmp_path / "out" / "final").exists()
    killed_at = len(read_metrics(tmp_path / "out" / "metrics.jsonl"))
    assert killed_at < STEPS

    launch(job)
    summary = completion(tmp_path / "out")
    assert summary["resumed_from"] >= 10
    assert_same_curve(losses(tmp_path / "out"), losses(reference[stage]), RESUME_RTOL)
    resumed, uninterrupted = final_weights(tmp_path / "out"), final_weights(reference[stage])
    for name, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-5, atol=1e-6)


def run_dir_with_verified_data(root: Path, sft_file: Path) -> list[str]:
    """A run directory whose verify stage is complete, and the overrides that point at it."""
    run_dir = root / "runs" / "preempt"
    (run_dir / "verify" / "sft").mkdir(parents=True)
    (run_dir / "verify" / "sft" / "verified.jsonl").write_bytes(sft_file.read_bytes())
    mark_complete(run_dir / "verify", {"provenance": {}})
    return [f"paths.root={root}", "run_name=preempt", "hydra.run.dir=" + str(root / "hydra")]


def test_sky_distill_train_stops_on_signals_with_85_and_resumes(reference, tiny_model_dir, sft_file, tmp_path):
    overrides = [
        *run_dir_with_verified_data(tmp_path, sft_file),
        *TRAIN_OVERRIDES,
        f"train.init={tiny_model_dir}",
        "deepspeed=zero2",
        "train.name=student",
    ]
    command = [sys.executable, "-m", "sky_distill.cli", "train", *overrides]
    output_dir = tmp_path / "runs" / "preempt" / "train" / "student"
    metrics = output_dir / "metrics.jsonl"

    # SIGUSR1 to `sky-distill train` alone: it forwards to the ranks, which finish the step and save.
    process = start_detached(command)
    wait_for(lambda: len(read_metrics(metrics)) >= 3, process)
    process.send_signal(signal.SIGUSR1)
    assert process.wait(timeout=120) == REQUEUE_EXIT_CODE, process.stdout.read().decode()[-3000:]
    first_stop = json.loads((output_dir / PREEMPTED_FILE).read_text())["step"]
    assert saved_steps(output_dir / "checkpoints")[-1] == first_stop
    assert [row["step"] for row in read_metrics(metrics)] == list(range(1, first_stop + 1))

    # SIGTERM to every process of the run at once (as SLURM does): torchrun ignores it, ranks save.
    process = start_detached(command)
    wait_for(lambda: len(read_metrics(metrics)) >= first_stop + 3, process)
    for pid in [process.pid, *descendants(process.pid)]:
        os.kill(pid, signal.SIGTERM)
    assert process.wait(timeout=120) == REQUEUE_EXIT_CODE, process.stdout.read().decode()[-3000:]
    second_stop = json.loads((output_dir / PREEMPTED_FILE).read_text())["step"]
    assert first_stop < second_stop < STEPS and saved_steps(output_dir / "checkpoints")[-1] == second_stop

    # The requeued run resumes from that checkpoint and ends where an uninterrupted run ends.
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert completion(output_dir)["resumed_from"] == second_stop
    assert not (output_dir / PREEMPTED_FILE).exists()
    assert_same_curve(losses(output_dir), losses(reference[2]), RESUME_RTOL)


@pytest.mark.parametrize("deepspeed", ["zero1", "zero2_offload", "zero3_offload"])
def test_every_deepspeed_config_trains_the_same_curve(deepspeed, reference, tiny_model_dir, sft_file, tmp_path):
    """Offload steps the optimizer with DeepSpeedCPUAdam (a C++ op built on first use);
    ZeRO-3 offload also runs with gradient checkpointing, eager attention and the fused loss
    (lm_head gathered from its partitions), against the reference's full-logit loss."""
    extra = (
        ["train.gradient_checkpointing=true", "train.attn_implementation=eager", "train.fused_loss=true"]
        if deepspeed == "zero3_offload"
        else []
    )
    job = make_job(tiny_model_dir, sft_file, tmp_path / "out", deepspeed, extra=extra)
    launch(job)
    assert completion(tmp_path / "out")["zero"] == dict(job.zero)
    assert_same_curve(losses(tmp_path / "out"), losses(reference[2]), 1e-4)


@pytest.mark.gpu
def test_one_gpu_trains_in_bf16_and_exports(tiny_model_dir, sft_file, tmp_path):
    job = make_job(
        tiny_model_dir, sft_file, tmp_path / "out", "zero2", extra=["train.num_procs=1", "train.max_steps=8"]
    )
    launch(job)
    summary = completion(tmp_path / "out")
    assert summary["precision"] == "bf16" and summary["world_size"] == 1
    row = read_metrics(tmp_path / "out" / "metrics.jsonl")[-1]
    assert row["train/mem/gpu_peak_gib"] > 0
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "final").dtype == torch.bfloat16


def kd_job(tiny_model_dir, sft_file, output_dir, extra, topk_dirs=()) -> TrainJob:
    """A few ZeRO-2 steps with train.loss=distill."""
    overrides = [item for item in TRAIN_OVERRIDES if not item.startswith(("train.max_steps", "train.save_every"))]
    cfg = compose_config(
        [
            *overrides,
            "train.max_steps=4",
            f"train.init={tiny_model_dir}",
            "deepspeed=zero2",
            "train.loss=distill",
            *extra,
        ],
        stage="train",
    )
    return TrainJob(
        train=stage_config(cfg, "train")["train"],
        zero=OmegaConf.to_container(cfg.deepspeed.zero_optimization, resolve=True),
        data_files=[str(sft_file)],
        output_dir=str(output_dir),
        teacher_topk_dirs=[str(path) for path in topk_dirs],
    )


def test_zero2_distills_from_stored_top_k_and_from_an_online_teacher_with_features(tiny_model_dir, tmp_path):
    import numpy as np

    from sky_distill.generate.topk_store import TopK, TopKWriter
    from sky_distill.models.tiny import TinyModelSpec, save_tiny_model
    from sky_distill.train.data import encode_conversation
    from sky_distill.train.distill import PROJECTIONS
    from sky_distill.train.templates import end_of_turn_ids

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    records = [
        SFTExample(
            messages=[
                Message(role="user", content=p.problem),
                Message(role="assistant", content=reference_response(p, "worked")),
            ],
            problem_id=p.id,
            sample_index=0,
        )
        for p in make_problems(ArithmeticSpec(), "train", 32)
    ]
    sft = tmp_path / "verified.jsonl"
    write_jsonl(sft, records)
    writer = TopKWriter(tmp_path / "shard.topk")  # a teacher sure of the response: 0.9 on its next token
    for record in records:
        encoded = encode_conversation(
            tokenizer, [m.model_dump() for m in record.messages], None, end_of_turn_ids(tokenizer)
        )
        sampled = np.asarray(encoded.response_ids, dtype=np.int32)
        ids = np.stack([sampled, *((sampled + shift) % 256 for shift in (1, 2, 3))], axis=1).astype(np.int32)
        logprobs = np.log(np.tile([0.9, 0.05, 0.02, 0.01], (len(sampled), 1))).astype(np.float16)
        writer.add((record.problem_id, 0), TopK(ids, logprobs, sampled))
    writer.flush()

    offline = tmp_path / "offline"
    launch(
        kd_job(
            tiny_model_dir, sft, offline, [f"train.distill.teacher_path={tiny_model_dir}"], [tmp_path / "shard.topk"]
        )
    )
    rows = read_metrics(offline / "metrics.jsonl")
    assert completion(offline)["world_size"] == 2 and len(rows) == 4
    kd = [row["train/loss/kd"] for row in rows]
    assert all(np.isfinite(kd)) and kd[-1] < kd[0], kd
    assert rows[-1]["train/loss"] == pytest.approx(rows[-1]["train/loss/ce"] + rows[-1]["train/loss/kd"], rel=1e-5)

    wide = tmp_path / "wide-teacher"  # another width: a learned projection, trained by the ZeRO optimizer
    save_tiny_model(TinyModelSpec(num_layers=2, hidden_size=256, num_heads=4, num_kv_heads=4), wide, seed=1)
    online = tmp_path / "online"
    extra = [
        "train.distill.teacher=online",
        f"train.distill.teacher_path={wide}",
        "train.distill.kind=jsd",
        "train.distill.temperature=2.0",
        "train.distill.features.weight=1.0",
        "train.distill.features.layers=[[1,2]]",
    ]
    launch(kd_job(tiny_model_dir, sft, online, extra))
    rows = read_metrics(online / "metrics.jsonl")
    assert rows[-1]["train/loss/feature"] < rows[0]["train/loss/feature"] and rows[-1]["train/loss/kd"] > 0
    exported = AutoModelForCausalLM.from_pretrained(online / "final").state_dict()
    assert not any(key.startswith(PROJECTIONS) for key in exported)
