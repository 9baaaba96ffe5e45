"""Reading the thought formats of recorded responses."""

import pytest

from sky_distill.generate.thoughts import split_thought


@pytest.mark.parametrize(
    ("response", "reasoning", "fmt", "expected"),
    [
        ("just text", None, "none", (None, "just text", True)),
        ("<think>\n1+2=3\n</think>\nThe answer is 3.", None, "think", ("1+2=3", "The answer is 3.", True)),
        ("1+2=3\n</think>\n\nThe answer is 3.", None, "think", ("1+2=3", "The answer is 3.", True)),  # tag in prompt
        ("<think>\n1+2=3 and then", None, "think", ("1+2=3 and then", "", False)),  # truncated mid-thought
        ("The answer is 3.", "1+2=3", "reasoning_field", ("1+2=3", "The answer is 3.", True)),
        ("", "1+2=3 and then", "reasoning_field", ("1+2=3 and then", "", False)),
        (
            "<|begin_of_thought|>\n\nsteps\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\nx=3\n\n<|end_of_solution|>",
            None,
            "sky_t1",
            ("steps", "x=3", True),
        ),
        ("<|begin_of_thought|>\nsteps that never end", None, "sky_t1", ("steps that never end", "", False)),
    ],
)
def test_split_thought(response, reasoning, fmt, expected):
    split = split_thought(response, reasoning, fmt)
    assert (split.thought, split.answer, split.closed) == expected


def test_the_sky_t1_fixture_traces_split_into_their_thought_and_solution():
    import json

    from tests.conftest import FIXTURES

    path = FIXTURES / "sky_t1_traces_sample.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is not present")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    splits = [split_thought(row["trace"], None, "sky_t1") for row in rows]
    assert all(split.closed for split in splits)
    assert [split.thought for split in splits] == [row["thought"].strip() for row in rows]
    assert [split.answer for split in splits] == [row["solution"].strip() for row in rows]
