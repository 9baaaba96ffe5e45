"""The task's own benchmark scores held-out problems only: a task without a held-out set is refused."""

import json

import pytest

from sky_distill.benchmarks.loading import TrainTestLeakError, resolve_benchmark
from sky_distill.config import BenchmarkOptions, TaskConfig


def problems_file(path, ids):
    path.write_text("".join(json.dumps({"id": i, "problem": f"What is {i}?", "answer": "1"}) + "\n" for i in ids))
    return str(path)


def test_a_jsonl_task_evaluated_as_its_own_benchmark_is_refused_unless_it_names_a_held_out_file(tmp_path):
    """Seen: task.kind=jsonl scored its training problems (train ids = test ids) under `split: test`."""
    train = problems_file(tmp_path / "train.jsonl", ["a", "b", "c"])
    task = TaskConfig(name="mine", kind="jsonl", path=train)
    with pytest.raises(TrainTestLeakError, match=r"'mine' is the task itself .* set task.test_path"):
        resolve_benchmark("mine", {}, task, None)
    held_out = problems_file(tmp_path / "test.jsonl", ["d", "e"])
    loaded = resolve_benchmark("mine", {}, task.model_copy(update={"test_path": held_out}), None, BenchmarkOptions())
    assert [p.id for p in loaded.problems] == ["d", "e"]
    assert loaded.source["split"] == "test" and loaded.source["path"] == held_out
    overlapping = problems_file(tmp_path / "overlap.jsonl", ["d", "b"])
    with pytest.raises(TrainTestLeakError, match=r"1 of 2 held-out problems are also training problems .*\['b'\]"):
        resolve_benchmark("mine", {}, task.model_copy(update={"test_path": overlapping}), None)


def test_the_eval_stage_refuses_the_leak_before_anything_runs(tmp_path):
    from sky_distill.evaluate.stage import run
    from tests.conftest import compose_config

    train = problems_file(tmp_path / "train.jsonl", ["a", "b"])
    cfg = compose_config(
        [
            f"paths.root={tmp_path}",
            "task.kind=jsonl",
            "task.name=mine",
            f"+task.path={train}",
            "eval.benchmarks=[mine]",
            "eval.models=[student]",
        ],
        stage="eval",
    )
    with pytest.raises(TrainTestLeakError):
        run(cfg)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.jsonl"))


def test_the_arithmetic_task_keeps_its_disjoint_test_split():
    loaded = resolve_benchmark("arithmetic", {}, TaskConfig(name="arithmetic"), None)
    assert len(loaded.problems) == 200 and loaded.source["split"] == "test"
