import pytest

from sky_distill.verify.choice import extract_choice
from sky_distill.verify.math import equivalent, extract_answer, is_correct


@pytest.mark.parametrize(
    "response,expected",
    [
        ("so \\boxed{12} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("<think>maybe \\boxed{3}</think> The answer is \\boxed{4}.", "4"),
        (
            "<|begin_of_thought|>\\boxed{9}<|end_of_thought|><|begin_of_solution|>So \\boxed{10}<|end_of_solution|>",
            "10",
        ),
        ("The final answer is $42$.", "42"),
        ("no answer here", None),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ],
)
def test_extract_answer(response, expected):
    assert extract_answer(response) == expected


@pytest.mark.parametrize(
    "pred,gold,equal",
    [
        ("0.5", "\\frac{1}{2}", True),
        ("936", "936", True),
        ("937", "936", False),
        ("\\sqrt{4}", "2", True),
        ("x", "2", False),
    ],
)
def test_equivalent(pred, gold, equal):
    assert equivalent(pred, gold) is equal


def test_is_correct_uses_the_final_answer():
    assert is_correct("<think>\\boxed{1}</think>\\boxed{2}", "2")
    assert not is_correct("<think>\\boxed{2}</think>\\boxed{1}", "2")


@pytest.mark.parametrize(
    "response,letter",
    [
        ("The answer is (C).", "C"),
        ("\\boxed{B}", "B"),
        ("I think a good approach is to compute. Answer: D", "D"),
        ("This is a hard question and a tricky one.", None),
    ],
)
def test_extract_choice(response, letter):
    assert extract_choice(response) == letter
