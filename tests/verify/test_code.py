"""Code answers: solution extraction, the test contract, tolerant output comparison, and the
runners on real benchmark problems (HumanEval, MBPP, the LeetCode contest set) in the sandbox."""

import json

import pytest

from sky_distill.config import SandboxConfig
from sky_distill.verify.checks import check_response
from sky_distill.verify.code import (
    MalformedTestsError,
    configure,
    extract_code,
    functional_program,
    outputs_match,
    parse_tests,
)
from tests.conftest import BENCHMARKS, requires_shared


def fenced(code: str, language: str = "python") -> str:
    return f"Here is my solution.\n\n```{language}\n{code}\n```\n"


# --- pure ---------------------------------------------------------------------------------------


def test_extract_code_takes_the_last_python_block_after_the_thinking():
    response = "<think>```python\nprint('draft')\n```</think>First:\n```python\nx = 1\n```\nFinal:\n```py\nx = 2\n```"
    assert extract_code(response) == "x = 2\n"
    assert extract_code("```\nprint(1)\n```") == "print(1)\n"  # a plain fence
    assert extract_code("def f():\n    return 1") == "def f():\n    return 1\n"  # the whole region, if it is code
    assert extract_code("I would use a loop.") is None
    assert extract_code("```cpp\nint main() {}\n```") is None  # another language


@pytest.mark.parametrize(
    "tests,message",
    [
        (None, "tests: missing"),
        ("{not json", "tests: not valid JSON"),
        ({"type": "unit"}, "tests.type"),
        ({"type": "functional"}, "tests.code"),
        ({"type": "functional", "code": "assert True", "entry_point": "not a name"}, "tests.entry_point"),
        ({"type": "stdio", "cases": []}, "tests.cases: missing or empty"),
        ({"type": "stdio", "cases": "[{broken"}, "tests.cases: not valid JSON"),
        ({"type": "stdio", "cases": [{"input": "1"}]}, "tests.cases[0].output"),
        ({"type": "stdio", "cases": [{"input": "1", "output": "1"}], "timeout_s": -1}, "tests.timeout_s"),
    ],
)
def test_malformed_tests_are_named(tests, message):
    with pytest.raises(MalformedTestsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_tests(tests)
    result = check_response("code", fenced("print(1)"), "", tests)
    assert result["status"] == "error" and message in result["detail"]


def test_tests_may_come_as_json_text():
    tests = parse_tests(json.dumps({"type": "stdio", "cases": json.dumps([{"input": "1", "output": "2"}])}))
    assert tests["cases"] == [{"input": "1", "output": "2"}]


def test_functional_program_calls_check_only_when_defined():
    with_check = functional_program(
        "def f(): return 1", {"code": "def check(c):\n    assert c() == 1", "entry_point": "f"}
    )
    assert with_check.rstrip().endswith("check(f)") and "from typing import *" in with_check
    asserts = functional_program("def f(): return 1", {"code": "assert f() == 1", "entry_point": "f", "prelude": ""})
    assert "check(" not in asserts and "typing" not in asserts


@pytest.mark.parametrize(
    "got,expected,match",
    [
        ("3\n", "3", True),
        ("1 2 3\n\n", "1  2\n3", True),
        ("0.3333333", "0.333333333", True),
        ("0.33", "0.333333", False),
        ("1e-3", "0.001", True),
        ("10", "10.0", True),
        ("10", "11", False),
        ("YES", "yes", False),
        ("1 2", "1 2 3", False),
    ],
)
def test_outputs_match_tolerantly(got, expected, match):
    assert outputs_match(got, expected) is match


# --- real problems in the sandbox ---------------------------------------------------------------


def rows(name, count):
    with open(BENCHMARKS / name) as handle:
        return [json.loads(next(handle)) for _ in range(count)]


@pytest.mark.slow
@requires_shared(BENCHMARKS)
def test_humaneval_and_mbpp_reference_solutions_pass_and_wrong_ones_fail():
    for row in rows("humaneval.jsonl", 4):
        tests = {"type": "functional", "code": row["test"], "entry_point": row["entry_point"]}
        assert check_response("code", fenced(row["prompt"] + row["answer"]), "", tests, 30)["status"] == "correct"
        wrong = f"def {row['entry_point']}(*args):\n    return None"
        result = check_response("code", fenced(wrong), "", tests, 30)
        assert result["status"] == "incorrect" and "AssertionError" in result["detail"]
    for row in rows("mbpp_test.jsonl", 4):
        tests = {"type": "functional", "code": "\n".join(row["test_list"]), "entry_point": None}
        assert check_response("code", fenced(row["answer"]), "", tests, 30)["status"] == "correct"
        assert check_response("code", fenced("pass"), "", tests, 30)["status"] == "incorrect"


MINIMUM_PUSHES = """
class Solution:
    def minimumPushes(self, word: str) -> int:
        return sum(index // 8 + 1 for index in range(len(word)))
"""


@pytest.mark.slow
@requires_shared(BENCHMARKS)
def test_leetcode_contest_problem_with_a_correct_and_a_wrong_solution():
    row = rows("leetcode_contest_2307_2401.jsonl", 1)[0]
    assert row["meta"]["titleSlug"] == "minimum-number-of-pushes-to-type-word-i"
    tests = {"type": "functional", "code": row["test"], "entry_point": None}
    assert check_response("code", fenced(MINIMUM_PUSHES), "", tests, 60)["status"] == "correct"
    off_by_one = MINIMUM_PUSHES.replace("index // 8 + 1", "index // 9 + 1")
    assert check_response("code", fenced(off_by_one), "", tests, 60)["status"] == "incorrect"


@pytest.mark.slow
def test_an_early_exit_does_not_pass_the_tests():
    tests = {"type": "functional", "code": "assert add(1, 1) == 3", "entry_point": "add"}
    exploit = "import sys\ndef add(a, b):\n    return a + b\nsys.exit(0)"
    result = check_response("code", fenced(exploit), "", tests, 20)
    assert result["status"] == "incorrect" and "exited before" in result["detail"]


SUM_PROGRAM = "import sys\nnumbers = list(map(float, sys.stdin.read().split()))\nprint(sum(numbers) / len(numbers))"


@pytest.mark.slow
def test_stdio_cases_tolerant_comparison_and_first_failure():
    cases = [
        {"input": "1 2\n", "output": "1.5000000\n"},
        {"input": "1 1 1", "output": "1"},
        {"input": "2 4", "output": "3"},
    ]
    tests = {"type": "stdio", "cases": cases}
    assert check_response("code", fenced(SUM_PROGRAM), "", tests, 30)["status"] == "correct"
    wrong = {"type": "stdio", "cases": [*cases[:1], {"input": "1 1", "output": "5"}, {"input": "2 4", "output": "3"}]}
    result = check_response("code", fenced(SUM_PROGRAM), "", wrong, 30)
    assert result["status"] == "incorrect" and result["detail"].startswith("case 2/3: expected '5'")
    configure(SandboxConfig(stop_at_first_failure=False))
    try:
        wrong_twice = {
            "type": "stdio",
            "cases": [{"input": "1", "output": "2"}, {"input": "3", "output": "3"}, {"input": "1", "output": "9"}],
        }
        result = check_response("code", fenced(SUM_PROGRAM), "", wrong_twice, 30)
        assert result["status"] == "incorrect" and result["detail"].startswith("passed 1/3")
    finally:
        configure(None)


@pytest.mark.slow
def test_per_test_timeout_and_per_problem_cap():
    slow_on_big = "import time\nn = int(input())\ntime.sleep(n)\nprint(n)"
    tests = {"type": "stdio", "cases": [{"input": "0", "output": "0"}, {"input": "30", "output": "30"}], "timeout_s": 1}
    result = check_response("code", fenced(slow_on_big), "", tests, 30)
    assert result["status"] == "timeout" and result["detail"].startswith("case 2/2: time limit")
    many = {"type": "stdio", "cases": [{"input": "1", "output": "1"}] * 20, "timeout_s": 5}
    capped = check_response("code", fenced(slow_on_big), "", many, 3)
    assert capped["status"] == "timeout" and "problem time cap" in capped["detail"]
    assert capped["elapsed_s"] < 10


@pytest.mark.slow
def test_answers_without_code_are_unparsed():
    tests = {"type": "stdio", "cases": [{"input": "", "output": "1"}]}
    assert check_response("code", "I would print one.", "", tests, 10)["status"] == "unparsed"
