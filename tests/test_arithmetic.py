import re

import pytest

from sky_distill.tasks.arithmetic import ArithmeticSpec, make_problems, reference_response, split_of, worked_solution
from sky_distill.verify.math import is_correct


def test_problems_are_deterministic_and_splits_disjoint():
    spec = ArithmeticSpec(2, 3, seed=7)
    train = make_problems(spec, "train", 300)
    assert train == make_problems(spec, "train", 300)
    test = make_problems(spec, "test", 100)
    pairs = lambda problems: {(p.metadata["a"], p.metadata["b"]) for p in problems}  # noqa: E731
    assert not pairs(train) & pairs(test)
    assert all(split_of(p.metadata["a"], p.metadata["b"]) == "test" for p in test)
    assert len({p.id for p in train}) == 300
    assert make_problems(ArithmeticSpec(2, 3, seed=8), "train", 50) != train[:50]


@pytest.mark.parametrize(("a", "b"), [(999, 99), (5, 7), (120, 380), (0, 0), (456, 789)])
def test_worked_solution_is_correct_column_addition(a, b):
    text = worked_solution(a, b)
    lines = re.findall(r"(\d)\+(\d)\+(\d)=(\d+)", text)
    carry = 0
    digits = []
    for x, y, c, total in lines:
        assert int(c) == carry
        assert int(x) + int(y) + int(c) == int(total)
        carry = int(total) // 10
        digits.append(int(total) % 10)
    value = int("".join(map(str, reversed(digits)))) + carry * 10 ** len(digits)
    assert value == a + b
    assert is_correct(text, str(a + b))


def test_reference_responses_verify():
    for problem in make_problems(ArithmeticSpec(), "test", 20):
        assert is_correct(reference_response(problem, "worked"), problem.answer)
        assert is_correct(reference_response(problem, "direct"), problem.answer)
        assert not is_correct(reference_response(problem, "worked"), str(int(problem.answer) + 1))
