"""A small real verify run: a generate stage's outputs built from shared benchmark data and real
model outputs (math, code, multiple choice, malformed problems, a contaminated one, duplicates),
then `sky-distill verify` on it once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sky_distill.records import Message, Problem, Trace, write_jsonl
from sky_distill.runs import mark_complete
from tests.conftest import BENCHMARKS, FIXTURES, compose_config

DEV_BENCHMARKS = ("aime24", "amc23", "minerva_math", "olympiadbench")  # not math500: that one is decontaminated
OUTPUTS_PER_BENCHMARK = 4

STDIO_PROBLEM = "Read two integers and print their sum."
STDIO_RIGHT = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
STDIO_WRONG = "```python\na, b = map(int, input().split())\nprint(a - b)\n```"


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def make_trace(
    problem: Problem, index: int, response: str, truncated: bool = False, tokens: int | None = None
) -> Trace:
    return Trace(
        problem_id=problem.id,
        sample_index=index,
        source=problem.source,
        messages=[Message(role="system", content="Think step by step."), Message(role="user", content=problem.problem)],
        response=response,
        model="dev-teacher",
        engine="fixture",
        engine_version="0",
        sampling={"temperature": 0.7, "top_p": 1.0, "max_tokens": 32768},
        seed=index,
        prompt_tokens=len(problem.problem) // 4,
        completion_tokens=tokens if tokens is not None else max(1, len(response) // 4),
        finish_reason="length" if truncated else "stop",
        truncated=truncated,
    )


def build_generation(run_dir: Path) -> dict:
    """problems.jsonl, traces.jsonl and COMPLETE.json of a finished generate stage; returns what is where."""
    problems: list[Problem] = []
    traces: list[Trace] = []

    golds = {name: {row["id"]: row for row in read_rows(BENCHMARKS / f"{name}.jsonl")} for name in DEV_BENCHMARKS}
    outputs = read_rows(FIXTURES / "model_outputs_dev.jsonl")
    for name in DEV_BENCHMARKS:
        chosen = [row for row in outputs if row["benchmark"] == name][:OUTPUTS_PER_BENCHMARK]
        for row in chosen:
            gold = golds[name][row["problem_id"]]
            problem = Problem(
                id=row["problem_id"],
                problem=gold["problem"],
                answer=str(gold["answer"]),
                source=name,
                metadata={"level": name},
            )
            if problem.id not in {p.id for p in problems}:
                problems.append(problem)
            index = sum(t.problem_id == problem.id for t in traces)
            traces.append(make_trace(problem, index, row["response"], truncated=row["truncated_or_no_final_marker"]))

    for row in read_rows(BENCHMARKS / "humaneval.jsonl")[:2]:
        problem = Problem(
            id=row["id"],
            problem=row["prompt"],
            source="humaneval",
            answer_type="code",
            tests={"type": "functional", "code": row["test"], "entry_point": row["entry_point"]},
            metadata={"difficulty": "easy"},
        )
        problems.append(problem)
        traces.append(make_trace(problem, 0, f"```python\n{row['prompt']}{row['answer']}\n```"))
        traces.append(make_trace(problem, 1, f"```python\ndef {row['entry_point']}(*args):\n    return None\n```"))

    stdio = Problem(
        id="stdio-sum",
        problem=STDIO_PROBLEM,
        source="codeforces_style",
        answer_type="code",
        tests={"type": "stdio", "cases": [{"input": "1 2\n", "output": "3\n"}, {"input": "10 -4", "output": "6"}]},
        metadata={"difficulty": "easy"},
    )
    problems.append(stdio)
    traces += [make_trace(stdio, 0, STDIO_RIGHT), make_trace(stdio, 1, STDIO_WRONG), make_trace(stdio, 2, STDIO_RIGHT)]

    choice = Problem(
        id="gpqa-1",
        problem="Which is a noble gas? (A) N (B) O (C) Ne (D) H",
        answer="C",
        source="gpqa",
        answer_type="choice",
    )
    problems.append(choice)
    traces += [
        make_trace(choice, 0, "Neon is inert.\n\nThe answer is (C)."),
        make_trace(choice, 1, "It is a gas. \\boxed{A}"),
    ]

    # Malformed problems: each gives an error verdict naming the problem.
    broken = [
        Problem(id="broken-gold", problem="What is 1+1?", answer="\\frac{", source="broken"),
        Problem(
            id="broken-cases",
            problem="Sum.",
            source="broken",
            answer_type="code",
            tests={"type": "stdio", "cases": [{"input": "1"}]},
        ),
        Problem(
            id="broken-json", problem="Sum.", source="broken", answer_type="code", tests='{"type": "stdio", "cases": [{'
        ),
    ]
    for problem in broken:
        problems.append(problem)
        traces.append(make_trace(problem, 0, "```python\nprint(2)\n```\n\\boxed{2}"))

    # A training problem copied from an eval set: decontamination removes it.
    math500 = read_rows(BENCHMARKS / "math500.jsonl")[0]
    copied = Problem(
        id="copied-from-math500", problem=math500["problem"], answer=str(math500["answer"]), source="scraped"
    )
    problems.append(copied)
    traces.append(make_trace(copied, 0, f"Done.\n\n\\boxed{{{math500['answer']}}}"))

    generate_dir = run_dir / "generate"
    write_jsonl(generate_dir / "problems.jsonl", problems)
    write_jsonl(generate_dir / "traces.jsonl", traces)
    mark_complete(generate_dir, {"traces": len(traces)})
    return {"problems": {p.id: p for p in problems}, "traces": traces, "broken": [p.id for p in broken]}


VERIFY_OVERRIDES = [
    "verify.workers=2",
    "verify.timeout_s=30",
    "verify.dedup.exact=true",
    "verify.dedup.near_problems=true",
    "verify.decontaminate.benchmarks=[math500]",
    "verify.sft.format=think",
]


@pytest.fixture(scope="session")
def verify_run(tmp_path_factory):
    """(run directory, what was generated, the stage's report) of one real verify run."""
    if not (BENCHMARKS.exists() and FIXTURES.exists()):
        pytest.skip(f"{BENCHMARKS} or {FIXTURES} is not present")
    from sky_distill.verify.stage import run

    root = tmp_path_factory.mktemp("verify-run")
    run_dir = root / "runs" / "demo"
    generated = build_generation(run_dir)
    cfg = compose_config(
        [f"paths.root={root}", f"paths.benchmarks_dir={BENCHMARKS}", *VERIFY_OVERRIDES], stage="verify"
    )
    report = run(cfg)
    return run_dir, generated, report
