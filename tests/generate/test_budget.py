"""Budget forcing's control flow with a scripted engine, and as the shard writer's strategy (the real vLLM
path is in tests/evaluate/test_eval_engine.py)."""

import json

import pytest

from sky_distill.config import GenerateConfig, ModelConfig, SamplingConfig, ThinkingBudgetConfig
from sky_distill.generate.budget import BudgetForcer, Thought, next_thinking_step, read_thinking, thinking_path
from sky_distill.generate.engine import SampleRequest, SampleResult
from sky_distill.generate.sampling import generate_shard
from sky_distill.generate.shards import shard_name
from sky_distill.records import Problem
from sky_distill.settings_guard import SettingsChangedError
from tests.generate.fakes import FakeEngine, FakeLazyEngine

SHARD = shard_name(0, 1)


class ScriptedEngine:
    """Answers each round from a script of (text, tokens, finish_reason); records the prompts it saw."""

    max_model_len = 10_000

    class tokenizer:  # noqa: N801 - stands in for a Hugging Face tokenizer
        @staticmethod
        def encode(text, add_special_tokens=False):
            return list(text.encode())

    def __init__(self, script):
        self.script, self.seen = list(script), []

    def generate(self, requests, sampling):
        for request in requests:
            text, tokens, finish = self.script.pop(0)
            self.seen.append((bytes(request.prompt_token_ids[3:]).decode(), request.max_tokens, list(sampling.stop)))
            yield SampleResult(request, text, len(request.prompt_token_ids), tokens, finish, 0.0)


def thought():
    return Thought(SampleRequest("p", 0, [], seed=1, max_tokens=100, prompt_token_ids=[1, 2, 3]))


def run(script, **budget):
    engine = ScriptedEngine(script)
    config = ThinkingBudgetConfig(answer_prefix={"math": "ANS:"}, **budget)
    forcer = BudgetForcer(engine, SamplingConfig(stop=["<eos>"]), config, "math")
    item = thought()
    forcer.think([item])
    forcer.answer([item])
    return item, engine.seen


def test_an_early_end_of_thinking_is_replaced_by_wait_until_the_minimum():
    item, seen = run(
        [("short", 5, "stop"), ("more", 6, "stop"), ("final", 3, "stop")],
        thinking_tokens=100,
        min_thinking_tokens=10,
    )
    assert item.text == "shortWaitmore</think>final" and item.extensions == 1 and not item.forced
    assert item.thinking_tokens == 11 and item.generated_tokens == 14
    assert seen[1] == ("shortWait", 95, ["</think>"])  # the second round continues the text, within budget
    assert seen[2][2] == ["<eos>"]  # the answer uses the run's own stop strings


def test_the_budget_forces_the_end_of_thinking_and_the_answer_prefix():
    item, seen = run([("long thoughts", 20, "length"), ("42}", 2, "stop")], thinking_tokens=20)
    assert item.text == "long thoughts</think>ANS:42}" and item.forced
    assert seen[0][1] == 20 and seen[1][0] == "long thoughts</think>ANS:"


def test_next_step_rules():
    budget = ThinkingBudgetConfig(thinking_tokens=50, min_thinking_tokens=20, max_extensions=1)
    state = thought()
    state.thinking_tokens = 5
    assert next_thinking_step(state, "stop", budget) == "extend"
    state.extensions = 1
    assert next_thinking_step(state, "stop", budget) == "answer"
    state.thinking_tokens = 50
    assert next_thinking_step(state, "stop", budget) == "force"


class TokenizingFakeEngine(FakeEngine):
    """The fake engine with the tokenizer budget forcing continues prompts with."""

    tokenizer = ScriptedEngine.tokenizer


def test_budget_forcing_is_a_strategy_of_the_one_shard_writer(tmp_path):
    """Failures go to the errors file and are retried; thinking counts sit beside the traces; the budget
    is part of the shard's settings, so another budget cannot extend these samples."""
    problems = [Problem(id=f"p{i}", problem="1+1", source="t") for i in range(2)]
    config = GenerateConfig(sampling=SamplingConfig(n=2, max_tokens=8))
    budget = ThinkingBudgetConfig(thinking_tokens=4, answer_tokens=3)
    model = ModelConfig(name="f", path="f")
    engine = TokenizingFakeEngine(max_model_len=10_000, fail={("p1", 1)})
    summary = generate_shard(problems, model, config, tmp_path, FakeLazyEngine(engine), budget=budget)
    assert not summary["complete"] and summary["done_samples"] == 3 and summary["gen/failed_requests"] == 1
    errors = [json.loads(line) for line in (tmp_path / f"{SHARD}.errors.jsonl").read_text().splitlines()]
    assert [(e["kind"], e["problem_id"], e["sample_index"]) for e in errors] == [("request", "p1", 1)]
    again = generate_shard(
        problems, model, config, tmp_path, FakeLazyEngine(TokenizingFakeEngine(10_000)), budget=budget
    )
    thinking = read_thinking(thinking_path(tmp_path, SHARD))
    assert again["complete"] and sorted(thinking) == [("p0", 0), ("p0", 1), ("p1", 0), ("p1", 1)]
    assert all(1 <= row["thinking_tokens"] <= 4 for row in thinking.values())
    longer = budget.model_copy(update={"thinking_tokens": 8})
    with pytest.raises(SettingsChangedError, match=r"budget.thinking_tokens \(4 -> 8\)"):
        generate_shard(problems, model, config, tmp_path, FakeLazyEngine(TokenizingFakeEngine(10_000)), budget=longer)
