"""Problem files with bad records: every bad row is an error naming file, line and column."""

import json

from sky_distill.config import TaskConfig
from sky_distill.tasks.loader import load_task_problems, load_task_problems_located
from tests.conftest import BENCHMARKS, requires_shared

ROWS = [
    {"qid": "a", "question": "1+1?", "gold": "2"},
    {"question": "no id"},
    {"qid": "", "question": "empty id"},
    {"qid": "b", "question": "   \n"},
    {"qid": "a", "question": "again a"},
    "not an object",
    {"qid": 7, "question": "numeric ids are fine", "gold": 1},
]


def write(path, rows):
    text = "\n".join(row if isinstance(row, str) and row == "{broken" else json.dumps(row) for row in rows)
    path.write_text(text + "\n")
    return path


def test_every_bad_row_is_reported_where_it_is(tmp_path):
    path = write(tmp_path / "tasks.jsonl", [*ROWS, "{broken"])
    task = TaskConfig(
        name="mine", kind="jsonl", path=str(path), fields={"id": "qid", "problem": "question", "answer": "gold"}
    )
    problems, errors, locations = load_task_problems_located(task, "train")
    assert [(p.id, p.problem, p.answer) for p in problems] == [("a", "1+1?", "2"), ("7", "numeric ids are fine", "1")]
    assert locations == {"a": (str(path), 1), "7": (str(path), 7)}
    assert [str(error).removeprefix(f"{path}:") for error in errors] == [
        "2: qid: missing field (mapped to 'id')",
        "3: qid: empty id (mapped to 'id')",
        "4: question: empty problem (mapped to 'problem')",
        f"5: id: duplicate id 'a' (first at {path}:1)",
        "6: <json>: expected a JSON object, got str",
        "8: <json>: not valid JSON (Expecting property name enclosed in double quotes at column 2)",
    ]


def test_multiple_choice_problems_need_choices(tmp_path):
    rows = [{"id": "q1", "problem": "Pick", "choices": ["x", "y"]}, {"id": "q2", "problem": "Pick"}]
    task = TaskConfig(name="mc", kind="jsonl", path=str(write(tmp_path / "mc.jsonl", rows)), answer_type="choice")
    problems, errors = load_task_problems(task, "train")
    assert [p.choices for p in problems] == [["x", "y"]]
    assert [(e.line, e.field) for e in errors] == [(2, "choices")] and "non-empty list of choices" in errors[0].message


@requires_shared(BENCHMARKS / "math500.jsonl")
def test_a_real_benchmark_file_loads_clean():
    task = TaskConfig(name="math500", kind="jsonl", path=str(BENCHMARKS / "math500.jsonl"))
    problems, errors = load_task_problems(task, "test")
    assert len(problems) == 500 and errors == []
    assert len({p.id for p in problems}) == 500 and all(p.answer for p in problems)
