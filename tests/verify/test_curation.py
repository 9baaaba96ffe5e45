"""Curation, pure parts: policies, filters, duplicates, decontamination, SFT formats."""

import json

import pytest

from sky_distill.benchmarks.loading import open_rows
from sky_distill.benchmarks.registry import UnknownBenchmarkError, load_registry
from sky_distill.errors import MissingInputError
from sky_distill.records import Message, Trace, Verdict
from sky_distill.verify.decontam import ContaminationIndex, build_index, contaminated_problems
from sky_distill.verify.dedup import (
    exact_duplicate_traces,
    minhash_signature,
    near_duplicate_groups,
    near_duplicate_problems,
)
from sky_distill.verify.select import TraceFilter, filter_traces, select_traces
from sky_distill.verify.sft import format_assistant, split_thinking, to_sft_example
from tests.conftest import BENCHMARKS, requires_shared


def trace(problem_id, index, tokens=10, truncated=False, response=None, reasoning=None, source="s"):
    return Trace(
        problem_id=problem_id,
        sample_index=index,
        source=source,
        messages=[Message(role="system", content="sys"), Message(role="user", content=f"question {problem_id}")],
        response=response if response is not None else f"answer {problem_id} {index}",
        model="teacher",
        engine="vllm",
        engine_version="0",
        sampling={"temperature": 0.7},
        seed=index,
        prompt_tokens=3,
        completion_tokens=tokens,
        finish_reason="length" if truncated else "stop",
        truncated=truncated,
        reasoning=reasoning,
    )


def verdict(t, correct):
    status = "correct" if correct else "incorrect"
    return Verdict(
        problem_id=t.problem_id,
        sample_index=t.sample_index,
        correct=correct,
        status=status,
        verifier="v",
        verifier_version="1",
    )


@pytest.fixture
def sampled():
    traces = [
        trace("a", 0, 30),
        trace("a", 1, 10),
        trace("a", 2, 20),
        trace("a", 3, 5, truncated=True),
        trace("b", 0, 40),
        trace("b", 1, 50),
        trace("c", 0, 15),
    ]
    correct = {
        ("a", 0): True,
        ("a", 1): True,
        ("a", 2): True,
        ("a", 3): True,
        ("b", 0): False,
        ("b", 1): True,
        ("c", 0): False,
    }
    return traces, {t.key: verdict(t, correct[t.key]) for t in traces}


def keys(traces):
    return [t.key for t in traces]


def test_policies(sampled):
    traces, verdicts = sampled
    assert keys(select_traces(traces, verdicts, "all_correct", None)) == [("a", 0), ("a", 1), ("a", 2), ("b", 1)]
    assert keys(select_traces(traces, verdicts, "first_k", 2)) == [("a", 0), ("a", 1), ("b", 1)]
    assert keys(select_traces(traces, verdicts, "shortest", 1)) == [("a", 1), ("b", 1)]
    assert keys(select_traces(traces, verdicts, "shortest", 1, drop_truncated=False)) == [("a", 3), ("b", 1)]
    assert len(select_traces(traces, verdicts, "all", None)) == 6
    assert keys(select_traces(list(reversed(traces)), verdicts, "all_correct", None)) == keys(
        select_traces(traces, verdicts, "all_correct", None)
    )  # order of input does not matter
    with pytest.raises(ValueError, match="policy"):
        select_traces(traces, verdicts, "best", None)


def test_filters_count_what_they_drop(sampled):
    traces, _ = sampled
    kept, dropped = filter_traces(
        traces,
        TraceFilter(min_tokens=10, max_tokens=45, excluded_problems={"c"}, excluded_traces={("a", 2)}),
    )
    assert keys(kept) == [("a", 0), ("a", 1), ("b", 0)]
    assert dropped == {"truncated": 1, "too_long": 1, "excluded_problem": 1, "duplicate": 1}


def test_exact_duplicates_keep_the_first_sample():
    traces = [
        trace("a", 1, response="Same  answer"),
        trace("a", 0, response="same answer"),
        trace("b", 0, response="same answer"),
    ]
    assert exact_duplicate_traces(traces) == {("a", 1)}


def test_near_duplicate_problems():
    base = "A rectangle has a perimeter of 30 units and its length is twice its width. What is the area of the rectangle in square units?"
    texts = {
        "p1": base,
        "p2": base.replace("the area", "the total area"),
        "p3": "How many positive divisors does 6! have? Give the count of all divisors including one and itself.",
        "p4": base.replace("30", "36").replace("twice", "three times"),
    }
    groups = near_duplicate_groups(texts, threshold=0.7, shingle_size=3)
    assert groups == [["p1", "p2"]]
    assert near_duplicate_problems(texts, threshold=0.7, shingle_size=3) == {"p2"}
    assert (minhash_signature(base, 64, 5, seed=0) == minhash_signature(base, 64, 5, seed=0)).all()  # stable


def test_contamination_index_finds_contained_eval_problems_not_boilerplate():
    index = ContaminationIndex(n=5)
    index.add(
        "evalset",
        [
            "Find the number of ordered pairs of integers x and y with x squared plus y squared equal to 25.",
            "Compute 2 + 2.",
        ],
    )
    found = contaminated_problems(
        {
            "copy": "Problem 7. Find the number of ordered pairs of integers x and y with x squared plus y squared equal to 25. Answer below.",
            "boilerplate": "Find the number of ordered pairs of apples in the basket.",
            "short": "Please compute 2 + 2.",
            "clean": "What is the capital of France?",
        },
        index,
    )
    assert found == {"copy": ["evalset"], "short": ["evalset"]}


@requires_shared(BENCHMARKS)
def test_decontamination_reads_eval_sets_by_name():
    registry = load_registry()
    assert open_rows(registry["math500"], BENCHMARKS).source["path"].endswith("/math500.jsonl")
    assert open_rows(registry["mbpp"], BENCHMARKS).source["path"].endswith("/mbpp_test.jsonl")  # the registry's file
    with pytest.raises(UnknownBenchmarkError, match="nonexistent"):
        build_index(["nonexistent"], BENCHMARKS, 8)
    with pytest.raises(MissingInputError, match="benchmarks_dir"):
        build_index(["math500"], None, 8, source="local")
    index = build_index(["math500", "aime24"], BENCHMARKS, 8)
    assert index.sizes == {"math500": 500, "aime24": 30}
    first = json.loads((BENCHMARKS / "math500.jsonl").read_text().splitlines()[0])["problem"]
    assert contaminated_problems({"x": f"Solve this: {first}"}, index) == {"x": ["math500"]}


@pytest.mark.parametrize(
    "response,reasoning,thinking,answer",
    [
        ("<think>\nwork\n</think>\n\nSo \\boxed{2}.", None, "work", "So \\boxed{2}."),
        ("work</think>So \\boxed{2}.", None, "work", "So \\boxed{2}."),  # the opening tag in the prompt
        (
            "<|begin_of_thought|>\n\nwork\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\nSo \\boxed{2}.\n\n<|end_of_solution|>",
            None,
            "work",
            "So \\boxed{2}.",
        ),
        ("So \\boxed{2}.", "separate reasoning", "separate reasoning", "So \\boxed{2}."),
        ("Step one.\n\nStep two.\n\nSo \\boxed{2}.", None, "Step one.\n\nStep two.", "So \\boxed{2}."),
        ("\\boxed{2}", None, "", "\\boxed{2}"),
        ("Plan.\n\n```python\nimport os\n\nprint(1)\n```", None, "Plan.", "```python\nimport os\n\nprint(1)\n```"),
    ],
)
def test_split_thinking(response, reasoning, thinking, answer):
    assert split_thinking(response, reasoning) == (thinking, answer)


def test_formats_and_records():
    assert format_assistant("t", "a", "raw response", "raw") == "raw response"
    assert format_assistant("t", "a", "r", "think") == "<think>\nt\n</think>\n\na"
    sky = format_assistant("t", "a", "r", "sky_t1")
    assert (
        sky.startswith("<|begin_of_thought|>")
        and sky.endswith("<|end_of_solution|>")
        and "<|begin_of_solution|>\n\na" in sky
    )
    with pytest.raises(ValueError, match="format"):
        format_assistant("t", "a", "r", "xml")
    t = trace("a", 0, response="Thinking.\n\n\\boxed{2}")
    example = to_sft_example(t, verdict(t, True), "sky_t1", system_prompt="Be careful.", run="r1")
    assert [m.role for m in example.messages] == ["system", "user", "assistant"]
    assert example.messages[0].content == "Be careful."
    assert split_thinking(example.messages[-1].content) == ("Thinking.", "\\boxed{2}")  # round trip
    kept_system = to_sft_example(t, verdict(t, True), "raw")
    assert kept_system.messages[0].content == "sys" and kept_system.messages[-1].content == t.response
    assert set(example.metadata) == set(kept_system.metadata)  # same keys in every record (datasets needs it)
    assert example.metadata["run"] == "r1" and example.metadata["verdict"] == "correct"
