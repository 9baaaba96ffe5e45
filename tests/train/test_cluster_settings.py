"""Settings for 8 x 80 GB clusters: DeepSpeed groups as composed, the GPU a rank takes, the online
teacher refused where it cannot fit, MFU without the input embedding."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sky_distill.train.distributed import cuda_device_index

CONF = Path(__file__).resolve().parents[2] / "conf"


def zero(group: str) -> dict:
    with initialize_config_dir(str(CONF), version_base=None):
        cfg = compose("config", overrides=[f"deepspeed={group}"])
    return OmegaConf.to_container(cfg.deepspeed.zero_optimization, resolve=True)


def test_deepspeed_groups_overlap_communication_and_offload_parameters_only_when_asked():
    for group in ("zero2", "zero2_offload", "zero3", "zero3_offload", "zero3_offload_params"):
        assert zero(group)["overlap_comm"] is True, group
    assert zero("zero3_offload")["offload_optimizer"]["device"] == "cpu"
    assert "offload_param" not in zero("zero3_offload")  # the 32B recipe's group: optimizer alone
    assert zero("zero3_offload_params")["offload_param"]["device"] == "cpu"


def test_train_sbatch_asks_for_memory_and_builds_extensions_node_locally():
    script = (CONF.parent / "slurm" / "train.sbatch").read_text()
    assert "#SBATCH --mem=0" in script
    assert "TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-${TMPDIR:-/tmp}/" in script
    assert script.index("sky_distill.train.extensions") < script.rindex("sky-distill train")


def test_a_rank_takes_its_local_rank_modulo_the_visible_gpus():
    assert [cuda_device_index(rank, 8) for rank in (0, 7)] == [0, 7]
    assert [cuda_device_index(rank, 1) for rank in range(4)] == [0, 0, 0, 0]  # one GPU bound per task
    assert cuda_device_index(5, 2) == 1
    with pytest.raises(RuntimeError, match="no device is visible"):
        cuda_device_index(0, 0)


def test_an_online_teacher_too_large_to_replicate_is_refused_with_the_offline_route():
    from sky_distill.train.distill import replica_problem

    gpu = 80 * 10**9
    assert replica_problem(7_600_000_000, 2, gpu) is None  # a 7B teacher in bf16 fits beside the student
    problem = replica_problem(32_800_000_000, 2, gpu)
    assert "teacher=offline" in problem and "generate.sampling.logprobs" in problem
    assert "up to ~14B parameters" in problem


def test_teacher_parameters_are_counted_without_loading(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from sky_distill.train.distill import count_teacher_parameters

    loaded = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert count_teacher_parameters(str(tiny_model_dir)) == sum(p.numel() for p in loaded.parameters())


@pytest.mark.parametrize("tie", [False, True])
def test_mfu_leaves_the_input_embedding_out_unless_it_is_the_output_projection(tie):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from sky_distill.train.model import count_parameters, flop_parameters

    model = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=1000,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            tie_word_embeddings=tie,
        )
    )
    embedding = 1000 * 32
    assert flop_parameters(model) == count_parameters(model) - (0 if tie else embedding)


def test_throughput_summary_spans_the_logged_windows():
    from sky_distill.train.throughput import ThroughputSummary

    summary = ThroughputSummary()
    summary.add(1000, 4e12, 2.0, {"train/mem/gpu_peak_gib": 30.0})
    summary.add(3000, 12e12, 2.0, {"train/mem/gpu_peak_gib": 20.0})
    result = summary.summary(world_size=2, peak=1.0)  # 1 TFLOP/s a device
    assert result["train/tokens_per_s"] == 1000.0
    assert result["train/mfu"] == pytest.approx(2.0)
    assert result["train/mem/gpu_peak_gib"] == 30.0
