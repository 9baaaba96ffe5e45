"""`generate`'s problems from your own files through a task/ field mapping: any local format, same errors."""

from __future__ import annotations

from sky_distill.config import TaskConfig
from sky_distill.data_sources.layout_examples import write_file
from sky_distill.tasks.loader import load_task_problems
from tests.conftest import compose_config


def test_the_task_config_example_reads_parquet_and_json_arrays_with_its_mapping(tmp_path):
    rows = [
        {"uid": "a", "question": "1+1?", "final_answer": "2", "level": 1},
        {"uid": "b", "question": "2+3?", "final_answer": "5", "level": 2},
    ]
    write_file(tmp_path / "part-1.parquet", rows[:1])
    write_file(tmp_path / "part-2.json", rows[1:] + [{"uid": "c", "final_answer": "9"}])
    cfg = compose_config(["task=local_file", f"task.path={tmp_path}"])
    task = TaskConfig.model_validate(dict(cfg.task))
    problems, errors = load_task_problems(task, "train")
    assert [(p.id, p.problem, p.answer, p.metadata) for p in problems] == [
        ("a", "1+1?", "2", {"level": 1}),
        ("b", "2+3?", "5", {"level": 2}),
    ]
    assert [str(e) for e in errors] == [f"{tmp_path / 'part-2.json'}:2: question: missing field (mapped to 'problem')"]
