"""Agreement of the math verifier with hand-checked labels on the shared dev sets (real math-verify),
and hard timeouts: a pathological answer costs at most the timeout and never stalls a run."""

import json
import time
from pathlib import Path

import pytest

from sky_distill.records import Problem
from sky_distill.verify.batch import verify_responses
from sky_distill.verify.labelled import (
    HELD_OUT_TEXTS,
    read_inline_responses,
    read_pairs,
    read_responses,
    response_excerpt,
)
from sky_distill.verify.math import equivalent, is_correct
from sky_distill.verify.pool import Failure, Timeout, map_with_timeout
from tests.conftest import BENCHMARKS, FIXTURES, requires_shared

# Measured: 260/263 pairs and 199/200 outputs (plain math-verify: 258/263 and 182/200;
# scripts/bench_verify.py prints both). The misses are three pairs (two labelled ambiguous, which
# need 2-digit precision; one whose gold is a whole worked solution) and one output whose answer
# is a sentence, not an expression.
MIN_PAIR_AGREEMENT = 0.98
MIN_OUTPUT_AGREEMENT = 0.97
DATA = Path(__file__).parent / "data"
# Held-out (tests/verify/data, frozen before issue 18's rules were written; examined in round 2). Measured at
# the end of round 5: 161/162 pairs and 207/208 responses. Floors catch regressions.
MIN_HELD_OUT_PAIRS = 0.99
MIN_HELD_OUT_RESPONSES = 0.99
# Held-out v2 (frozen in 22ef364; examined in round 4), v3 (frozen in 6eae732; measured once after round 4,
# 180/183 pairs and 188/194 responses, then examined in round 5) and v4 (frozen in bfb09ac before round 5's
# rule changes; the split issue 18's targets are judged on). Measured at the end of round 5, per split:
# pairs 176/176, 182/183, 178/179; responses 108/109, 193/194, 194/196 (targets 97% and 98.5%).
MIN_SPLIT_PAIRS = {"held_out_v2": 0.99, "held_out_v3": 0.99, "held_out_v4": 0.99}
MIN_SPLIT_RESPONSES = {"v2": 0.99, "v3": 0.99, "v4": 0.985}
# Near misses the held-out responses accept: `6.21` for `6.2` (it rounds to the gold's one decimal).
KNOWN_NEAR_MISS_ACCEPTED = {"minerva-256"}


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
@requires_shared(FIXTURES / "answer_equivalence_dev.jsonl")
def test_answer_pairs_agree_with_their_labels():
    rows = read_jsonl(FIXTURES / "answer_equivalence_dev.jsonl")
    wrong = [
        (r["pred"][:60], r["gold"][:60], r["equal"]) for r in rows if equivalent(r["pred"], r["gold"]) != r["equal"]
    ]
    agreement = 1 - len(wrong) / len(rows)
    print(f"\nanswer pairs: {len(rows) - len(wrong)}/{len(rows)} = {agreement:.3f}; disagreements: {wrong}")
    assert agreement >= MIN_PAIR_AGREEMENT


@pytest.mark.slow
@requires_shared(FIXTURES / "model_outputs_dev.jsonl")
@requires_shared(BENCHMARKS)
def test_model_outputs_agree_with_their_labels_through_the_worker_pool():
    rows = read_jsonl(FIXTURES / "model_outputs_dev.jsonl")
    problems = {}
    for benchmark in {row["benchmark"] for row in rows}:
        for gold in read_jsonl(BENCHMARKS / f"{benchmark}.jsonl"):
            problems[gold["id"]] = Problem(
                id=gold["id"], problem=gold["problem"], answer=str(gold["answer"]), source=benchmark
            )
    items = [(row["problem_id"], index, row["response"]) for index, row in enumerate(rows)]
    verdicts = verify_responses(items, problems, timeout_s=20, workers=2)
    agree = sum(verdict.correct == row["label"] for verdict, row in zip(verdicts, rows))
    print(f"\nmodel outputs: {agree}/{len(rows)} = {agree / len(rows):.3f}")
    assert [v.problem_id for v in verdicts] == [row["problem_id"] for row in rows]
    assert agree / len(rows) >= MIN_OUTPUT_AGREEMENT


def hang_in_c(seconds: int) -> int:
    """A check that never returns to the interpreter: no signal-based timeout can stop it."""
    if seconds < 0:
        return 9**9**9**9  # a single C call that would run for years
    time.sleep(seconds)
    return seconds


def raise_error(_: int) -> int:
    raise ValueError("bad input")


@pytest.mark.slow
def test_a_hanging_check_is_killed_and_the_others_still_run():
    started = time.monotonic()
    results = list(map_with_timeout(hang_in_c, [(0,), (-1,), (0,), (-1,), (0,)], timeout_s=2, workers=2))
    elapsed = time.monotonic() - started
    assert [type(r).__name__ for r in results] == ["int", "Timeout", "int", "Timeout", "int"]
    assert elapsed < 20  # two kills of 2 s each on 2 workers, plus worker restarts
    failure = list(map_with_timeout(raise_error, [(1,)], timeout_s=5, workers=1))[0]
    assert isinstance(failure, Failure) and "bad input" in failure.message
    assert isinstance(results[1], Timeout)


@pytest.mark.slow
def test_a_pathological_answer_costs_at_most_the_timeout():
    problems = {"p": Problem(id="p", problem="?", answer="3", source="t")}
    items = [
        ("p", 0, "\\boxed{9^{9^{9^{9}}}}"),  # recognised as too big to evaluate: compared as text, at once
        ("p", 1, "\\boxed{(x+1)^{5000}}"),  # sympy expands it for longer than the timeout: the worker is killed
        ("p", 2, "\\boxed{3}"),
    ]
    started = time.monotonic()
    verdicts = verify_responses(items, problems, timeout_s=3, workers=2)
    assert time.monotonic() - started < 12
    assert [v.status for v in verdicts] == ["incorrect", "timeout", "correct"]
    assert "3s" in verdicts[1].detail


@pytest.mark.slow
@pytest.mark.parametrize("split,floor", [("dev", 0.98), ("held_out", MIN_HELD_OUT_PAIRS), *MIN_SPLIT_PAIRS.items()])
def test_labelled_pairs_from_other_graders_agree(split, floor):
    rows = read_pairs(DATA / f"equivalence_{split}.jsonl")
    wrong = [
        (r["kind"], r["pred"][:50], r["gold"][:50]) for r in rows if equivalent(r["pred"], r["gold"]) != r["label"]
    ]
    print(f"\n{split}: {len(rows) - len(wrong)}/{len(rows)}")
    assert 1 - len(wrong) / len(rows) >= floor, wrong


@pytest.mark.slow
@requires_shared(FIXTURES / "sky_t1_traces_sample.jsonl")
@requires_shared(BENCHMARKS)
def test_held_out_long_responses_agree():
    responses = read_responses(DATA / "responses_held_out.jsonl", FIXTURES / "sky_t1_traces_sample.jsonl", BENCHMARKS)
    wrong = [(r.problem_id, r.kind) for r in responses if is_correct(r.response, r.gold) != r.label]
    accepted = {problem_id for problem_id, kind in wrong if kind.startswith("near_miss")}
    assert accepted <= KNOWN_NEAR_MISS_ACCEPTED  # no new false positive
    assert 1 - len(wrong) / len(responses) >= MIN_HELD_OUT_RESPONSES, wrong


@pytest.mark.slow
@requires_shared(BENCHMARKS)
@pytest.mark.parametrize("split,floor", MIN_SPLIT_RESPONSES.items())
def test_held_out_model_output_responses_agree(split, floor):
    texts = Path(__file__).parents[2] / HELD_OUT_TEXTS[split]  # model outputs are not in git: scripts/heldout_texts.py
    if not texts.exists():
        pytest.skip(f"{texts} is not present (python scripts/heldout_texts.py --skythought <SkyThought clone>)")
    responses = read_inline_responses(texts, BENCHMARKS)
    wrong = [(r.problem_id, r.label) for r in responses if is_correct(r.response, r.gold) != r.label]
    print(f"\nheld-out {split} responses: {len(responses) - len(wrong)}/{len(responses)}")
    assert [problem_id for problem_id, label in wrong if not label] == []  # no false positive
    assert 1 - len(wrong) / len(responses) >= floor, wrong


def test_a_response_excerpt_starts_before_the_thinking_ends_or_keeps_the_tail():
    thinking = "a" * 5000 + "<|end_of_thought|>" + "answer \\boxed{3}"
    assert response_excerpt(thinking) == thinking[3000:]
    assert response_excerpt("x" * 7000 + "\\boxed{4}") == ("x" * 7000 + "\\boxed{4}")[-6000:]
    assert response_excerpt("short \\boxed{5}") == "short \\boxed{5}"
