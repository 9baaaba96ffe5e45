"""Decontamination reads eval sets the way the eval stage does: through the benchmark registry's
field mapping, from a local copy in paths.benchmarks_dir (or the Hub). A set that yields no
problem texts is an error, never an index that silently matches nothing."""

import json

import pytest

from sky_distill.benchmarks.loading import open_rows
from sky_distill.benchmarks.registry import UnknownBenchmarkError, load_registry
from sky_distill.errors import MissingInputError
from sky_distill.verify.decontam import build_index
from tests.conftest import BENCHMARKS, requires_shared

LCB_ROW = {  # a LiveCodeBench row in its Hub layout (eval/benchmarks/livecodebench.yaml maps these)
    "question_id": "abc301_a",
    "question_title": "Overall Winner",
    "question_content": "Takahashi and Aoki played N games. You are given a string S of length N, the results "
    "of the games. Find the overall winner: the one who won more games, or the one who reached that number first.",
    "platform": "atcoder",
    "contest_date": "2023-06-17T00:00:00",
    "starter_code": "",
    "difficulty": "easy",
    "public_test_cases": json.dumps([{"input": "5\nTTAAT\n", "output": "T\n", "testtype": "stdin"}]),
    "private_test_cases": "",
    "metadata": "{}",
}


def test_a_livecodebench_copy_in_its_hub_layout_decontaminates(tmp_path):
    (tmp_path / "livecodebench.jsonl").write_text(json.dumps(LCB_ROW) + "\n")
    index = build_index(["livecodebench"], tmp_path, 8)
    assert index.sizes == {"livecodebench": 1}
    assert index.matches(f"Practice problem. {LCB_ROW['question_content']}") == {"livecodebench"}


REGISTRY = load_registry()


@requires_shared(BENCHMARKS)
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_benchmark_definition_decontaminates_from_its_local_copy(name, tmp_path):
    spec = REGISTRY[name]
    column = {"id": "id", "problem": "problem", **spec.local.fields}
    directory = BENCHMARKS
    if (BENCHMARKS / spec.local.file).is_file():
        lines = (BENCHMARKS / spec.local.file).read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
    else:  # no shared copy (gpqa_diamond, livecodebench): one row in the layout the definition reads
        directory = tmp_path
        statement = f"An eval problem of {name} about seven bridges, three islands and one walk across all of them."
        rows = [{column["id"]: f"{name}-1", column["problem"]: statement}]
        (tmp_path / spec.local.file).write_text(json.dumps(rows[0]) + "\n")
    index = build_index([name], directory, 8, registry=REGISTRY, source="local")
    assert index.sizes == {name: len(rows)}  # every row gave its statement: none dropped
    assert index.matches(f"Training problem. {rows[-1][column['problem']]} Show your work.") == {name}
    assert index.matches("What is the capital of France? Answer in one word, please.") == set()


def test_an_eval_set_without_problem_texts_is_an_error_naming_file_line_and_field(tmp_path):
    (tmp_path / "livecodebench.jsonl").write_text(json.dumps({"question_id": "x", "content": "moved"}) + "\n")
    with pytest.raises(MissingInputError, match=r"no problem texts.*livecodebench.jsonl:1.*question_content"):
        build_index(["livecodebench"], tmp_path, 8, registry=REGISTRY)


def test_eval_sets_are_registry_benchmarks_read_locally_or_from_the_hub(tmp_path):
    with pytest.raises(UnknownBenchmarkError, match="did you mean 'math500'"):
        build_index(["math5000"], tmp_path, 8, registry=REGISTRY)
    with pytest.raises(MissingInputError, match="benchmarks_dir"):
        build_index(["math500"], None, 8, registry=REGISTRY, source="local")
    hub = open_rows(REGISTRY["livecodebench"], tmp_path)  # no local copy: the Hub, as eval reads it (lazily)
    assert hub.source["kind"] == "hub" and hub.source["dataset"] == "livecodebench/code_generation_lite"
    assert hub.fields["problem"] == "question_content"
