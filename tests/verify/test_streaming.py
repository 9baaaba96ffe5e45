"""The verify stage in bounded memory: a lazy worker pool, verdicts streamed in order, curation one
problem at a time, and the same outputs whether or not the trace file is sorted."""

from __future__ import annotations

import json
import random
import statistics

import pytest

from sky_distill.records import Message, Problem, Trace, Verdict, write_jsonl
from sky_distill.runs import mark_complete
from sky_distill.tasks.arithmetic import ArithmeticSpec, make_problems
from sky_distill.verify.batch import iter_verdicts
from sky_distill.verify.checks import VERIFIER_VERSION
from sky_distill.verify.curation import ProblemFile, problem_groups
from sky_distill.verify.pool import map_with_timeout
from sky_distill.verify.report import LengthTally
from tests.conftest import compose_config


def _double(value: int) -> int:
    return 2 * value


def test_the_pool_takes_items_lazily_and_keeps_their_order():
    pulled = []

    def items():
        for value in range(200):
            pulled.append(value)
            yield (value,)

    results = map_with_timeout(_double, items(), timeout_s=30, workers=1, window=8)
    assert next(results) == 0
    assert len(pulled) <= 9  # a window in flight, not the whole stream
    assert list(results) == [2 * value for value in range(1, 200)]
    assert list(map_with_timeout(_double, iter([]), timeout_s=30, workers=1)) == []


def test_length_tally_matches_statistics():
    generator = random.Random(0)
    for size in (1, 2, 7, 50):
        values = [generator.randint(1, 40) for _ in range(size)]
        tally = LengthTally()
        for value in values:
            tally.add(value)
        expected = statistics.median(values)
        summary = tally.summary()
        assert summary["median"] == expected and type(summary["median"]) is type(expected)
        assert summary["mean"] == round(statistics.fmean(values), 1) and summary["max"] == max(values)
    assert LengthTally().summary() == {"count": 0}


def test_problem_file_reads_problems_by_offset_and_names_bad_lines(tmp_path):
    path = tmp_path / "problems.jsonl"
    write_jsonl(path, [Problem(id="a", problem="1+1", answer="2", source="t")])
    with open(path, "a") as handle:
        handle.write('{"id": "b"}\n')  # no problem text
        handle.write(json.dumps({"id": "a", "problem": "2+2", "answer": "4", "source": "t"}) + "\n")
    problems = ProblemFile(path)
    assert problems.get("a").answer == "4"  # a repeated id: its last line, as a dict built from the file
    assert problems.get("missing") is None
    assert [str(error).split(": ")[0] for error in problems.errors] == [f"{path}:2"]
    assert list(problems.texts()) == [("a", "2+2")]


def test_verdicts_stream_in_item_order_with_reused_and_missing_ones(tmp_path):
    problems = {"p": Problem(id="p", problem="1+1?", answer="2", source="t")}
    partial = tmp_path / "partial.jsonl"
    reused = Verdict(
        problem_id="p", sample_index=2, correct=True, status="correct", verifier="x", verifier_version=VERIFIER_VERSION
    )
    write_jsonl(partial, [reused])
    items = [("p", 0, "\\boxed{2}"), ("gone", 0, "\\boxed{2}"), ("p", 2, "\\boxed{9}"), ("p", 3, "\\boxed{3}")]
    verdicts = list(iter_verdicts(iter(items), problems.get, 20, 1, progress_path=partial))
    assert [(v.problem_id, v.sample_index) for v in verdicts] == [(p, i) for p, i, _ in items]
    assert [v.status for v in verdicts] == ["correct", "error", "correct", "incorrect"]  # sample 2: reused
    assert "no problem with this id" in verdicts[1].detail


def _trace(problem: Problem, index: int, response: str) -> Trace:
    return Trace(
        problem_id=problem.id,
        sample_index=index,
        source=problem.source,
        messages=[Message(role="user", content=problem.problem)],
        response=response,
        model="m",
        engine="e",
        engine_version="0",
        sampling={},
        prompt_tokens=5,
        completion_tokens=len(response),
        finish_reason="stop",
        truncated=index == 3,
    )


def _generation(run_dir, traces, problems):
    generate = run_dir / "generate"
    write_jsonl(generate / "problems.jsonl", problems)
    write_jsonl(generate / "traces.jsonl", traces)
    mark_complete(generate, {"traces": str(generate / "traces.jsonl")})


def test_problem_groups_are_the_same_from_sorted_and_unsorted_files(tmp_path):
    problems = make_problems(ArithmeticSpec(seed=1), "train", 3)
    traces = [_trace(p, i, f"\\boxed{{{i}}}") for p in problems for i in range(2)]
    verdicts = [
        Verdict(
            problem_id=t.problem_id,
            sample_index=t.sample_index,
            correct=False,
            status="incorrect",
            verifier="v",
            verifier_version="1",
        )
        for t in traces
    ]
    write_jsonl(tmp_path / "sorted.jsonl", traces)
    write_jsonl(tmp_path / "sorted.verdicts.jsonl", verdicts)
    write_jsonl(tmp_path / "shuffled.jsonl", traces[::-1])
    write_jsonl(tmp_path / "shuffled.verdicts.jsonl", verdicts[::-1])
    streamed = list(problem_groups(tmp_path / "sorted.jsonl", tmp_path / "sorted.verdicts.jsonl", in_order=True))
    indexed = list(problem_groups(tmp_path / "shuffled.jsonl", tmp_path / "shuffled.verdicts.jsonl", in_order=False))
    keys = [[(t.key, v.sample_index) for t, v in group] for group in streamed]
    assert keys == [sorted((t.key, v.sample_index) for t, v in group) for group in indexed]  # samples in file order
    assert [[t.key for t, _ in group] for group in streamed] == [[(p.id, 0), (p.id, 1)] for p in problems]


@pytest.mark.slow
def test_verify_writes_the_same_curation_from_a_sorted_and_an_unsorted_trace_file(tmp_path):
    from sky_distill.verify.stage import run

    problems = make_problems(ArithmeticSpec(seed=2), "train", 6)
    traces = []
    for problem in problems:
        right = problem.answer
        responses = [
            f"\\boxed{{{right}}}",
            f"\\boxed{{{int(right) + 1}}}",
            f"so \\boxed{{{right}}}",
            f"\\boxed{{{right}}}",
        ]
        traces += [_trace(problem, index, response) for index, response in enumerate(responses)]
    outputs = {}
    for name, order in (("sorted", traces), ("unsorted", traces[::-1])):
        root = tmp_path / name
        _generation(root / "runs" / "demo", order, problems)
        cfg = compose_config(
            [f"paths.root={root}", "verify.workers=1", "verify.timeout_s=60", "verify.dedup.exact=true"], stage="verify"
        )
        report = run(cfg)
        verify_dir = root / "runs" / "demo" / "verify"
        verdicts = [json.loads(line) for line in (verify_dir / "verdicts.jsonl").read_text().splitlines()]
        assert [(v["problem_id"], v["sample_index"]) for v in verdicts] == [t.key for t in order]  # file order
        volatile = ("verify/seconds", "verify/responses_per_s", "provenance", "inputs")
        outputs[name] = (
            (verify_dir / "sft" / "verified.jsonl").read_text(),
            (verify_dir / "sft" / "all.jsonl").read_text(),
            {key: value for key, value in report.items() if key not in volatile},
        )
    assert outputs["sorted"] == outputs["unsorted"]
    verified, _, report = outputs["sorted"]
    assert report["verify/kept"] == len(verified.splitlines()) == 6 * 2  # samples 0 and 2: 1 is wrong, 3 a duplicate
    assert report["verify/filtering"]["exact_duplicate_traces"] == 6  # sample 3 repeats sample 0
    assert report["verify/dropped"] == {"duplicate": 6}
    assert report["verify/lengths"]["all"]["count"] == len(traces) and report["verify/problems_solved"] == 6
