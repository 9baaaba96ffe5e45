"""Launch arguments, the rendered DeepSpeed config, checkpoint bookkeeping and throughput math."""

import json
import os
import stat

import pytest

from sky_distill.config import TrainConfig
from sky_distill.runs import write_json_atomic
from sky_distill.train import checkpoint
from sky_distill.train.batching import BatchPlan
from sky_distill.train.job import render_deepspeed_config, resolve_precision, uses_optimizer_offload
from sky_distill.train.launch import LaunchError, rendezvous_args, torchrun_command
from sky_distill.train.sft import _trim_metrics
from sky_distill.train.throughput import mfu, peak_tflops, step_flops


def test_rendezvous_is_standalone_on_one_node_and_c10d_across_slurm_nodes(tmp_path, monkeypatch):
    assert rendezvous_args(1, {"MASTER_PORT": "6001"}) == [
        "--nnodes=1",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=127.0.0.1:6001",
        "--local-addr=127.0.0.1",
    ]
    assert rendezvous_args(2, {"MASTER_ADDR": "n1", "MASTER_PORT": "6000", "SLURM_JOB_ID": "42"}) == [
        "--nnodes=2", "--rdzv_backend=c10d", "--rdzv_endpoint=n1:6000", "--rdzv_id=42",
    ]  # fmt: skip
    with pytest.raises(LaunchError, match="SLURM_JOB_NODELIST"):
        rendezvous_args(2, {})
    # the first host of the allocation, as `scontrol show hostnames` expands it
    fake = tmp_path / "scontrol"
    fake.write_text("#!/bin/sh\n[ \"$1 $2 $3\" = 'show hostnames gpu[3-4]' ] && printf 'gpu3\\ngpu4\\n'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    args = rendezvous_args(2, {"SLURM_JOB_NODELIST": "gpu[3-4]", "SLURM_JOB_ID": "7"})
    assert "--rdzv_endpoint=gpu3:29500" in args and "--rdzv_id=7" in args
    command = torchrun_command(tmp_path / "job.json", 8, 2, {"MASTER_ADDR": "gpu3"})
    assert command[1:4] == ["-m", "torch.distributed.run", "--nproc_per_node=8"]
    assert command[-3:] == ["-m", "sky_distill.train.launch", str(tmp_path / "job.json")]


def test_deepspeed_config_states_batch_precision_and_clipping_once():
    train = TrainConfig(name="t", init="x", global_batch_size=96, micro_batch_size=2, max_grad_norm=0.5)
    zero = {"stage": 3, "offload_optimizer": {"device": "cpu"}, "offload_param": {"device": "cpu"}}
    rendered = render_deepspeed_config(train, zero, BatchPlan(96, 2, 8), "bf16")
    assert rendered["train_batch_size"] == 96 == 2 * rendered["gradient_accumulation_steps"] * 8
    assert rendered["train_micro_batch_size_per_gpu"] == 2 and rendered["gradient_clipping"] == 0.5
    assert rendered["bf16"] == {"enabled": True} and "fp16" not in rendered
    assert rendered["zero_optimization"] == zero and rendered["zero_optimization"] is not zero
    assert uses_optimizer_offload(zero) and not uses_optimizer_offload({"stage": 2})
    assert "bf16" not in render_deepspeed_config(train, {"stage": 2}, BatchPlan(96, 2, 8), "fp32")
    assert resolve_precision("auto", cuda_available=False, bf16_supported=False) == "fp32"
    assert resolve_precision("auto", cuda_available=True, bf16_supported=True) == "bf16"
    assert resolve_precision("auto", cuda_available=True, bf16_supported=False) == "fp16"


class NoEngine:
    def load_checkpoint(self, *args, **kwargs):
        raise AssertionError("must not load a mismatched checkpoint")


def test_a_checkpoint_from_another_world_size_or_data_is_refused(tmp_path):
    write_json_atomic(
        tmp_path / "step-00000010" / "COMPLETE", {"global_step": 10, "world_size": 2, "data_fingerprint": "a"}
    )
    (tmp_path / "step-00000015").mkdir()  # a save cut short by a kill: no COMPLETE
    assert checkpoint.saved_steps(tmp_path) == [10]
    with pytest.raises(checkpoint.CheckpointMismatchError, match="world_size=2.*this run has 4"):
        checkpoint.resume(NoEngine(), tmp_path, 0, {"world_size": 4, "data_fingerprint": "a"})
    with pytest.raises(checkpoint.CheckpointMismatchError, match="data_fingerprint"):
        checkpoint.resume(NoEngine(), tmp_path, 0, {"world_size": 2, "data_fingerprint": "b"})
    assert checkpoint.remove_incomplete(tmp_path) == ["step-00000015"]
    assert checkpoint.resume(NoEngine(), tmp_path / "none", 0, {}) == 0


def test_resume_forgets_metrics_of_steps_trained_again_and_a_torn_line(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(
        "".join(json.dumps({"step": s, "train/loss": 1.0}) + "\n" for s in range(1, 8)) + '{"step": 8, "tr'
    )
    _trim_metrics(metrics, 5)
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2, 3, 4, 5]


def test_mfu_counts_weights_and_causal_attention_per_sequence():
    dense_only = step_flops(1_000, 0, 64, [10, 20])
    assert dense_only == 6 * 1_000 * 30
    packed = step_flops(1_000, 2, 64, [10, 20])
    assert packed - dense_only == 6 * 2 * 64 * (100 + 400)  # not (10 + 20) ** 2: packed sequences are apart
    assert mfu(1e15, 1.0, 2, 1000.0) == pytest.approx(0.5)
    assert mfu(1e15, 1.0, 2, None) is None
    assert peak_tflops(123.0) == 123.0
