"""Throughput of the generate stage against bare vLLM and Hugging Face `generate`, in one run.

The stage (`generate_shard`: prompts, per-sample seeds, the in-flight window, writing every
trace to its shard file) and bare `vllm.LLM.generate` share one engine and the same prompts;
rounds alternate which side goes first, after a warm-up round of each. The goal is a stage
throughput of at least 0.95 of bare vLLM's. Completion tokens per second of wall time.

    python scripts/bench_generate.py                       # a tiny random model on CPU
    python scripts/bench_generate.py --model /models/Qwen2.5-7B-Instruct --problems 2000 --max-tokens 1024
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory or Hub id (default: a tiny random Qwen2 built here)")
    parser.add_argument("--problems", type=int, default=256)
    parser.add_argument("--n", type=int, default=4, help="samples per problem")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per side (after one warm-up)")
    parser.add_argument("--hf-problems", type=int, default=32, help="problems for the Hugging Face side (0: skip)")
    parser.add_argument("--hf-rounds", type=int, default=2)
    parser.add_argument("--out", help="write the results as JSON here")
    return parser.parse_args()


class ReadyEngine:
    """The stage's LazyEngine interface around an engine that is already running."""

    def __init__(self, engine):
        self.engine, self.started = engine, True

    def get(self):
        return self.engine

    def close(self) -> None:
        pass


def stage_round(problems, model, config, engine) -> tuple[int, float]:
    """The stage as `sky-distill generate` runs it, into a fresh shard directory."""
    from sky_distill.generate.sampling import generate_shard

    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        summary = generate_shard(problems, model, config, Path(directory), ReadyEngine(engine))
        elapsed = time.perf_counter() - started
    assert summary["complete"], summary
    return summary["gen/completion_tokens"], elapsed


def bare_round(llm, prompts, sampling, seeded: bool) -> tuple[int, float]:
    """What a researcher would write: `llm.generate` on all prompts with n samples each (or, seeded,
    one request per sample with its own seed, as the stage sends them)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    common = dict(temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_tokens)
    started = time.perf_counter()
    if seeded:
        inputs = [TokensPrompt(prompt_token_ids=ids) for ids in prompts for _ in range(sampling.n)]
        params = [SamplingParams(n=1, seed=index, **common) for index in range(len(inputs))]
        outputs = llm.generate(inputs, params, use_tqdm=False)
    else:
        inputs = [TokensPrompt(prompt_token_ids=ids) for ids in prompts]
        outputs = llm.generate(inputs, SamplingParams(n=sampling.n, **common), use_tqdm=False)
    elapsed = time.perf_counter() - started
    return sum(len(sample.token_ids) for output in outputs for sample in output.outputs), elapsed


def hf_round(model, tokenizer, prompts, sampling, device) -> tuple[int, float]:
    """Hugging Face `generate`, all prompts as one left-padded batch, n samples each."""
    import torch

    batch = [ids for ids in prompts for _ in range(sampling.n)]
    width = max(len(ids) for ids in batch)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=device)
    attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=device)
    started = time.perf_counter()
    with torch.no_grad():
        output = model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            do_sample=True,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_new_tokens=sampling.max_tokens,
            pad_token_id=pad,
        )
    elapsed = time.perf_counter() - started
    new = output[:, width:]
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    tokens = 0
    for row in new.tolist():
        for token in row:
            tokens += 1
            if token in eos_ids:
                break
    return tokens, elapsed


def show(round_index: int, name: str, measurement: tuple[int, float]) -> None:
    tokens, elapsed = measurement
    print(
        f"round {round_index}  {name:<17} {tokens:>8} tokens  {elapsed:7.2f} s  {tokens / elapsed:9.0f} tok/s",
        flush=True,
    )


def per_round(side: list[tuple[int, float]], baseline: list[tuple[int, float]]) -> list[float]:
    return [round((s[0] / s[1]) / (b[0] / b[1]), 3) for s, b in zip(side, baseline)]


def paired_ratio(side: list[tuple[int, float]], baseline: list[tuple[int, float]]) -> float:
    """The median over rounds of side/baseline throughput within the round."""
    return round(statistics.median(per_round(side, baseline)), 3)


def rate(measurements: list[tuple[int, float]]) -> float:
    return statistics.median(tokens / elapsed for tokens, elapsed in measurements)


def main() -> None:
    args = parse_args()
    import torch

    from sky_distill.config import GenerateConfig, ModelConfig, SamplingConfig
    from sky_distill.generate.prompts import messages_for
    from sky_distill.generate.vllm_engine import VLLMEngine
    from sky_distill.tasks.arithmetic import ArithmeticSpec, make_problems

    on_gpu = torch.cuda.is_available()
    workdir = tempfile.mkdtemp(prefix="bench-generate-")
    path = args.model
    if path is None:
        from sky_distill.models.tiny import TinyModelSpec, save_tiny_model

        path = os.path.join(workdir, "tiny")
        save_tiny_model(TinyModelSpec(num_layers=4, max_position_embeddings=1024), path, seed=0)
    engine_options = {"dtype": "bfloat16" if on_gpu else "float32", "max_model_len": 1024, "enforce_eager": not on_gpu}
    model = ModelConfig(name="bench", path=path, engine=engine_options)
    sampling = SamplingConfig(n=args.n, temperature=args.temperature, max_tokens=args.max_tokens, seed=0)
    config = GenerateConfig(sampling=sampling)
    problems = make_problems(ArithmeticSpec(), "train", args.problems)

    engine = VLLMEngine(model, seed=0)
    prompts = [engine.prompt_token_ids(messages_for(problem, model)) for problem in problems]
    subset = problems[: args.hf_problems]
    engine_seeded = config.model_copy(update={"per_sample_seeds": False})
    sides = {
        "stage": lambda: stage_round(problems, model, config, engine),
        "bare_vllm_seeded": lambda: bare_round(engine.llm, prompts, sampling, seeded=True),
        "bare_vllm": lambda: bare_round(engine.llm, prompts, sampling, seeded=False),
        "stage_engine_seed": lambda: stage_round(problems, model, engine_seeded, engine),
    }
    if subset:  # the stage on the problems Hugging Face gets (its batch is one padded tensor)
        sides["stage_hf_subset"] = lambda: stage_round(subset, model, config, engine)
    for run in sides.values():  # warm-up: compilation, caches, allocator
        run()
    results: dict[str, list[tuple[int, float]]] = {name: [] for name in sides}
    order = list(sides)
    for round_index in range(args.rounds):
        for name in order if round_index % 2 == 0 else reversed(order):
            results[name].append(sides[name]())
            show(round_index, name, results[name][-1])
    engine.close()  # Hugging Face runs alone: on a GPU, vLLM holds most of the memory

    if subset:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = "cuda" if on_gpu else "cpu"
        dtype = torch.bfloat16 if on_gpu else torch.float32
        hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        hf_prompts = prompts[: len(subset)]
        hf_round(hf_model, tokenizer, hf_prompts[:2], sampling, device)  # warm-up
        results["hf_generate"] = []
        for round_index in range(args.hf_rounds):
            results["hf_generate"].append(hf_round(hf_model, tokenizer, hf_prompts, sampling, device))
            show(round_index, "hf_generate", results["hf_generate"][-1])

    rates = {name: rate(measurements) for name, measurements in results.items()}
    report = {
        "device": torch.cuda.get_device_name() if on_gpu else f"cpu ({os.cpu_count()} cores)",
        "model": path if args.model else "tiny random Qwen2 (4 layers, hidden 128)",
        "problems": args.problems,
        "n": args.n,
        "max_tokens": args.max_tokens,
        "tok_per_s_median": {name: round(value) for name, value in rates.items()},
        # Sides run back to back within a round, so the ratio within a round is the least disturbed
        # by a noisy machine; the medians over rounds are given too.
        # The same work: per-sample seeds on both sides (the stage's default), or vLLM's seed on both.
        "stage_vs_bare_vllm_seeded": paired_ratio(results["stage"], results["bare_vllm_seeded"]),
        "stage_engine_seed_vs_bare_vllm": paired_ratio(results["stage_engine_seed"], results["bare_vllm"]),
        # What per-sample seeds cost inside vLLM (its seeded sampler handles requests one by one).
        "stage_vs_bare_vllm": paired_ratio(results["stage"], results["bare_vllm"]),
        "of_medians": {
            "stage_vs_bare_vllm_seeded": round(rates["stage"] / rates["bare_vllm_seeded"], 3),
            "stage_engine_seed_vs_bare_vllm": round(rates["stage_engine_seed"] / rates["bare_vllm"], 3),
        },
        "per_round_stage_vs_bare_vllm_seeded": per_round(results["stage"], results["bare_vllm_seeded"]),
        "per_round_stage_engine_seed_vs_bare_vllm": per_round(results["stage_engine_seed"], results["bare_vllm"]),
    }
    if "hf_generate" in rates:
        report["stage_vs_hf_generate"] = round(rates["stage_hf_subset"] / rates["hf_generate"], 2)
        report["hf_problems"] = len(subset)
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
