"""Budget forcing's control flow with a scripted engine (the real vLLM path is in test_eval_engine.py)."""

from sky_distill.config import SamplingConfig, ThinkingBudgetConfig
from sky_distill.generate.budget import BudgetForcer, Thought, next_thinking_step
from sky_distill.generate.engine import SampleRequest, SampleResult


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
