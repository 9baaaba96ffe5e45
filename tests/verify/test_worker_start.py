"""A verify worker's start-up (importing math-verify and sympy) never counts against an item's timeout."""

from sky_distill.records import Problem
from sky_distill.verify.batch import verify_responses


def test_fresh_workers_judge_their_first_items_within_a_short_timeout():
    # A fresh worker process takes seconds to import the math verifier; with a 1 s limit per item
    # every first item would time out (and its replacement worker too) if that import were timed.
    problems = {f"p{i}": Problem(id=f"p{i}", problem=f"{i} + {i}", answer=str(2 * i), source="test") for i in range(6)}
    items = [(f"p{i}", 0, f"so the answer is \\boxed{{{2 * i}}}") for i in range(6)]
    verdicts = verify_responses(items, problems, timeout_s=1.0, workers=2)
    assert [v.status for v in verdicts] == ["correct"] * 6
