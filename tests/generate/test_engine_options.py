"""Engine options from config reach vLLM; data-parallel work is split by problem and by device."""

import pytest

from sky_distill.config import ModelConfig
from sky_distill.errors import SkyDistillError
from sky_distill.generate.data_parallel import split_by_problem, worker_environments
from sky_distill.generate.engine import SampleRequest
from sky_distill.generate.vllm_engine import llm_kwargs
from tests.conftest import compose_config


def teacher(**engine) -> ModelConfig:
    return ModelConfig(name="t", path="org/m", revision="abc", engine=engine)


def test_every_engine_option_reaches_vllm():
    model = teacher(
        dtype="bfloat16",
        max_model_len=4096,
        tensor_parallel_size=4,
        gpu_memory_utilization=0.8,
        enable_prefix_caching=False,
        enforce_eager=True,
        kv_cache_dtype="fp8",
        quantization="fp8",
        trust_remote_code=True,
        max_num_seqs=128,
        max_num_batched_tokens=16384,
        enable_chunked_prefill=True,
        engine_args={"swap_space": 8},
    )
    assert llm_kwargs(model, seed=7, on_gpu=True) == {
        "model": "org/m",
        "revision": "abc",
        "dtype": "bfloat16",
        "max_model_len": 4096,
        "tensor_parallel_size": 4,
        "gpu_memory_utilization": 0.8,
        "enable_prefix_caching": False,
        "enforce_eager": True,
        "kv_cache_dtype": "fp8",
        "quantization": "fp8",
        "trust_remote_code": True,
        "max_num_seqs": 128,
        "max_num_batched_tokens": 16384,
        "enable_chunked_prefill": True,
        "logprobs_mode": "raw_logprobs",  # explicit: KD needs the model's T=1 distribution
        "seed": 7,
        "swap_space": 8,
    }


def test_unset_options_keep_vllm_defaults_and_cpu_prefills_whole():
    gpu = llm_kwargs(teacher(), seed=0, on_gpu=True)
    assert "max_num_seqs" not in gpu and "enable_chunked_prefill" not in gpu and "quantization" not in gpu
    cpu = llm_kwargs(teacher(max_model_len=512, enable_chunked_prefill=True), seed=0, on_gpu=False)
    assert cpu["enable_chunked_prefill"] is False and cpu["max_num_batched_tokens"] == 8192


def test_the_generate_seed_reaches_the_engine():
    from sky_distill.config import stage_config

    typed = stage_config(compose_config(["seed=1234"]), "generate")
    assert typed["generate"].sampling.seed == 1234
    assert llm_kwargs(typed["teacher"], typed["generate"].sampling.seed, on_gpu=False)["seed"] == 1234


def test_requests_are_split_by_problem_into_even_groups():
    requests = [SampleRequest(f"p{p}", i, [], seed=0, max_tokens=1) for p in range(5) for i in range(4)]
    groups = split_by_problem(requests, 2)
    assert sorted(len(group) for group in groups) == [8, 12]
    for group in groups:  # a problem's samples never straddle workers (one prefix cache each)
        assert all(sum(r.problem_id == pid for r in group) in (0, 4) for pid in {r.problem_id for r in requests})
    assert sorted(r.key for group in groups for r in group) == sorted(r.key for r in requests)


def test_workers_get_disjoint_devices():
    gpus = [str(index) for index in range(8)]
    assert worker_environments(2, 4, gpus, []) == [
        {"CUDA_VISIBLE_DEVICES": "0,1,2,3"},
        {"CUDA_VISIBLE_DEVICES": "4,5,6,7"},
    ]
    assert worker_environments(4, 2, ["3", "5", "6", "7", "0", "1", "2", "4"], [])[1] == {"CUDA_VISIBLE_DEVICES": "6,7"}
    with pytest.raises(SkyDistillError, match="needs 8 GPUs, 4 visible"):
        worker_environments(4, 2, gpus[:4], [])
    cpu = worker_environments(2, 1, [], [0, 1, 2, 3])
    assert cpu == [{"VLLM_CPU_OMP_THREADS_BIND": "0,1"}, {"VLLM_CPU_OMP_THREADS_BIND": "2,3"}]
