"""A recipe's data mixture from local copies in the Hub's columns: filters, head, draws, code tests, errors."""

from __future__ import annotations

import json

import pytest

from sky_distill.config import TaskConfig
from sky_distill.tasks.loader import load_task_problems
from sky_distill.tasks.mixture import MixtureSourceError, apps_tests


def write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def mixture(tmp_path, **sources) -> TaskConfig:
    return TaskConfig(name="mix", kind="mixture", local_dir=str(tmp_path), sources=sources, seed=1)


def test_where_head_and_count_select_and_ids_name_source_and_line(tmp_path):
    write(tmp_path / "numina.jsonl", [
        {"problem": f"p{i}", "solution": f"so \\boxed{{{i}}}", "source": "amc_aime" if i % 2 else "cn_k12"}
        for i in range(20)
    ])  # fmt: skip
    numina = {"dataset": "AI-MO/NuminaMath-CoT", "where": {"source": "amc_aime"}, "head": 6,
              "fields": {"problem": "problem", "solution": "solution"}, "answer_from_solution": True}  # fmt: skip
    problems, errors = load_task_problems(mixture(tmp_path, numina=numina), "train")
    assert not errors and [p.problem for p in problems] == ["p1", "p3", "p5", "p7", "p9", "p11"]
    assert [p.id for p in problems][:2] == ["numina-2", "numina-4"] and problems[0].answer == "1"
    assert {p.source for p in problems} == {"numina"}
    drawn, _ = load_task_problems(mixture(tmp_path, numina={**numina, "count": 3}), "train")
    again, _ = load_task_problems(mixture(tmp_path, numina={**numina, "count": 3}), "train")
    assert len(drawn) == 3 and drawn == again and {p.id for p in drawn} < {p.id for p in problems}


def test_code_sources_carry_the_verifiers_tests_and_bad_rows_name_file_line_and_field(tmp_path):
    good = {"inputs": ["1 2\n"], "outputs": ["3\n"]}
    write(tmp_path / "apps.jsonl", [
        {"question": "Add.", "input_output": json.dumps(good)},
        {"question": "Broken.", "input_output": json.dumps({"inputs": ["1"], "outputs": []})},
    ])  # fmt: skip
    apps = {"dataset": "codeparrot/apps", "split": "test", "fields": {"problem": "question"},
            "answer_type": "code", "tests_from": "apps"}  # fmt: skip
    problems, errors = load_task_problems(mixture(tmp_path, apps=apps), "train")
    assert problems[0].tests == {"type": "stdio", "cases": [{"input": "1 2\n", "output": "3\n"}]}
    assert problems[0].answer_type == "code"
    assert len(errors) == 1 and (errors[0].line, errors[0].field) == (2, "input_output")
    assert errors[0].path.endswith("apps.jsonl") and "1 inputs but 0 outputs" in errors[0].message
    call = apps_tests({"inputs": [[1, 2]], "outputs": [[3]], "fn_name": "add"})
    assert call["type"] == "functional" and call["entry_point"] == "add" and "def check(candidate)" in call["code"]


def test_a_filter_on_a_missing_column_and_a_missing_local_copy_say_what_to_fix(tmp_path):
    write(tmp_path / "still.jsonl", [{"question": "q", "combined_text": "t"}])
    still = {"dataset": "RUC-AIBOX/long_form_thought_data_5k", "where": {"domain": ["physics"]},
             "fields": {"problem": "question"}}  # fmt: skip
    with pytest.raises(MixtureSourceError, match=r"still.jsonl:1: task.sources.still.where names column 'domain'"):
        load_task_problems(mixture(tmp_path, still=still), "train")
    with pytest.raises(MixtureSourceError, match=r"task.sources.other: no local copy .*other.jsonl"):
        load_task_problems(mixture(tmp_path, other=still), "train")
    with pytest.raises(ValueError, match="needs task.sources"):
        TaskConfig(name="m", kind="mixture", sources={"x": None})
