"""Multiple-choice letters: boxed and stated answers are read; a stray article "a" never is."""

import pytest

from sky_distill.verify.checks import check_response
from sky_distill.verify.choice import extract_choice


@pytest.mark.parametrize(
    "response,letter",
    [
        ("The answer is (C).", "C"),
        ("\\boxed{B}", "B"),
        ("\\boxed{\\text{(C)}}", "C"),
        ("Final answer: $\\boxed{\\mathrm{A}}$", "A"),
        ("I think a good approach is to compute. Answer: D", "D"),
        ("**Answer: B**", "B"),
        ("The correct answer is **D**.", "D"),
        ("So (B) is correct.", "B"),
        ("I choose B.", "B"),
        ("Answer: (D) 42", "D"),
        ("The answer is (a).", "A"),  # a parenthesised lower-case letter is an option
        ("<think>the answer is B</think> The answer is C", "C"),  # after the thinking
        ("Let me check each option.\n\nC", "C"),  # a lone letter on the last line
        ("The answer is A.", "A"),
        # never an article or a pronoun
        ("This is a hard question and a tricky one.", None),
        ("The answer is a bit subtle, so let me think.", None),
        ("My answer is: A careful analysis shows nothing.", None),
        ("answer: a", None),
        ("A is a vowel.", None),
    ],
)
def test_extract_choice(response, letter):
    assert extract_choice(response) == letter


def test_letters_outside_the_options_are_ignored():
    assert extract_choice("The answer is E", num_choices=4) is None
    assert extract_choice("The answer is (B), not E", num_choices=4) == "B"


def test_choice_check_compares_letters():
    assert check_response("choice", "The answer is (c).", "C")["status"] == "correct"
    assert check_response("choice", "\\boxed{B}", "(C)")["status"] == "incorrect"
    assert check_response("choice", "I am not sure.", "C")["status"] == "unparsed"
