"""The benchmark registry: every definition validates, loads from the shared local copies, and
maps rows into problems (gold answers, choices, the verifier's code-test contract)."""

import base64
import json
import pickle
import zlib

import pytest

from sky_distill.benchmarks.loading import BenchmarkUnavailableError, resolve_benchmark
from sky_distill.benchmarks.registry import (
    BenchmarkDefinitionError,
    UnknownBenchmarkError,
    load_registry,
    read_definition,
)
from sky_distill.benchmarks.rows import decode_private_cases, gold_answer, row_date, shuffled_choices
from sky_distill.config import BenchmarkOptions, TaskConfig
from sky_distill.errors import MissingInputError
from tests.conftest import BENCHMARKS, requires_shared

REGISTRY = load_registry()
TASK = TaskConfig(name="arithmetic", test_size=5)
ISSUE_BENCHMARKS = {
    "aime24", "aime25", "amc23", "math500", "gsm8k", "minerva_math", "olympiadbench",
    "gpqa_diamond", "livecodebench", "humaneval", "mbpp", "leetcode_contest",
}  # fmt: skip
LOCAL_COUNTS = {
    "aime24": 30,
    "aime25": 30,
    "amc23": 40,
    "math500": 500,
    "gsm8k": 1319,
    "minerva_math": 272,
    "olympiadbench": 675,
    "humaneval": 164,
    "mbpp": 500,
    "leetcode_contest": 180,
}


def load(name, **options):
    return resolve_benchmark(name, REGISTRY, TASK, str(BENCHMARKS), BenchmarkOptions(**options))


def test_the_registry_has_every_benchmark_of_the_issue_with_complete_definitions():
    assert set(REGISTRY) >= ISSUE_BENCHMARKS
    for spec in REGISTRY.values():
        assert spec.hub is not None, f"{spec.name}: the real loading code reads the Hub"
        assert spec.sampling.max_tokens > 0 and spec.sampling.n >= 1
        assert "{problem}" in spec.prompt_template


@requires_shared(BENCHMARKS)
@pytest.mark.parametrize("name", sorted(LOCAL_COUNTS))
def test_every_local_copy_loads_completely(name):
    loaded = load(name)
    assert loaded.errors == []
    assert len(loaded.problems) == LOCAL_COUNTS[name]
    assert len({p.id for p in loaded.problems}) == len(loaded.problems)
    assert loaded.source == {"kind": "local", "path": str(BENCHMARKS / REGISTRY[name].local.file)} | {
        "release": None,
        "date_from": None,
        "date_to": None,
    }
    spec = REGISTRY[name]
    for problem in loaded.problems:
        assert problem.answer_type == spec.answer_type and problem.source == name
        if spec.answer_type == "math":
            assert problem.answer and "\\boxed{}" in problem.problem
        else:
            assert problem.answer == "" and problem.tests["type"] == "functional"
            assert problem.tests["code"].strip()


@requires_shared(BENCHMARKS)
def test_code_problems_follow_the_verifier_contract():
    humaneval = load("humaneval", limit=3).problems[0]
    assert humaneval.tests["entry_point"] == "has_close_elements"
    assert "def check(candidate)" in humaneval.tests["code"]
    assert "def has_close_elements" in humaneval.problem
    mbpp = load("mbpp", limit=1).problems[0]
    assert mbpp.tests == {
        "type": "functional",
        "code": 'assert remove_Occ("hello","l") == "heo"\nassert remove_Occ("abcda","a") == "bcd"\n'
        'assert remove_Occ("PHP","P") == "H"\n',
        "entry_point": None,
    }
    assert 'assert remove_Occ("hello","l") == "heo"' in mbpp.problem  # the tests name the function
    leetcode = load("leetcode_contest", limit=1).problems[0]
    assert leetcode.tests["code"].lstrip().startswith("my_solution = Solution()")
    assert leetcode.tests["entry_point"] is None


@requires_shared(BENCHMARKS)
def test_options_apply_a_date_window_a_limit_and_a_prompt():
    window = load("leetcode_contest", date_from="2024-01-01", date_to="2024-01-31")
    assert 0 < len(window.problems) < 180
    assert window.source["date_from"] == "2024-01-01"
    assert all(row_date(p.metadata.get("start_time", "2024-01-02")) for p in window.problems)
    assert {p.metadata["difficulty"] for p in window.problems} <= {"Easy", "Medium", "Hard"}
    assert len(load("gsm8k", limit=7).problems) == 7
    custom = load("aime24", limit=1, prompt_template="Q: {problem}\nA:")
    assert custom.problems[0].problem.startswith("Q: Every morning Aya")


def test_task_benchmark_and_unknown_names():
    task = resolve_benchmark("arithmetic", REGISTRY, TASK, None)
    assert len(task.problems) == 5 and task.spec is None
    with pytest.raises(UnknownBenchmarkError, match="unknown benchmark 'aime2024'.*did you mean 'aime24'"):
        resolve_benchmark("aime2024", REGISTRY, TASK, None)


def test_a_missing_local_copy_is_a_clear_error(tmp_path):
    with pytest.raises(MissingInputError, match="no local copy at .*aime24.jsonl"):
        resolve_benchmark("aime24", REGISTRY, TASK, str(tmp_path), BenchmarkOptions(source="local"))


def test_gated_gpqa_says_how_to_get_access(monkeypatch):
    import datasets

    def refuse(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'Idavidrein/gpqa' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", refuse)
    with pytest.raises(BenchmarkUnavailableError) as raised:
        resolve_benchmark("gpqa_diamond", REGISTRY, TASK, None)
    message = str(raised.value)
    assert "Idavidrein/gpqa is gated" in message and "huggingface.co/datasets/Idavidrein/gpqa" in message
    assert "gpqa_diamond.jsonl in paths.benchmarks_dir" in message


def test_gpqa_rows_become_shuffled_choices(tmp_path):
    rows = [
        {
            "id": f"rec{i}",
            "problem": f"Which is right? ({i})",
            "correct": "right",
            "incorrect_1": "wrong 1",
            "incorrect_2": "wrong 2",
            "incorrect_3": "wrong 3",
        }
        for i in range(12)
    ]
    (tmp_path / "gpqa_diamond.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = resolve_benchmark("gpqa_diamond", REGISTRY, TASK, str(tmp_path)).problems
    letters = {p.answer for p in problems}
    assert len(letters) > 1, "the correct option should not always sit at the same letter"
    for problem in problems:
        assert problem.answer_type == "choice" and problem.choices[ord(problem.answer) - 65] == "right"
        assert f"{problem.answer}) right" in problem.problem
    assert shuffled_choices("rec0", "right", ["a", "b", "c"]) == shuffled_choices("rec0", "right", ["a", "b", "c"])


def test_livecodebench_rows_map_to_stdio_and_functional_tests(tmp_path):
    private = base64.b64encode(
        zlib.compress(pickle.dumps(json.dumps([{"input": "3\n", "output": "9\n", "testtype": "stdin"}])))
    )
    stdio = {
        "question_id": "abc123",
        "question_content": "Read n, print n squared.",
        "starter_code": "",
        "public_test_cases": json.dumps([{"input": "2\n", "output": "4\n", "testtype": "stdin"}]),
        "private_test_cases": private.decode(),
        "metadata": "{}",
        "contest_date": "2024-09-01T00:00:00",
        "difficulty": "easy",
        "platform": "atcoder",
    }
    functional = {
        **stdio,
        "question_id": "lc1",
        "starter_code": "class Solution:\n    def add(self, a: int, b: int) -> int:\n        ",
        "public_test_cases": json.dumps([{"input": "1\n2", "output": "3", "testtype": "functional"}]),
        "private_test_cases": "",
        "metadata": json.dumps({"func_name": "add"}),
        "contest_date": "2024-06-01T00:00:00",
    }
    (tmp_path / "livecodebench.jsonl").write_text(json.dumps(stdio) + "\n" + json.dumps(functional) + "\n")
    problems = {p.id: p for p in resolve_benchmark("livecodebench", REGISTRY, TASK, str(tmp_path)).problems}
    assert problems["abc123"].tests == {
        "type": "stdio",
        "cases": [{"input": "2\n", "output": "4\n"}, {"input": "3\n", "output": "9\n"}],
    }
    assert "stdin" in problems["abc123"].problem
    code = problems["lc1"].tests["code"]
    assert problems["lc1"].tests["type"] == "functional" and "Solution().add(*_args)" in code
    namespace = {}
    exec("class Solution:\n    def add(self, a, b):\n        return a + b\n" + code, namespace)  # trusted test text
    later = resolve_benchmark(
        "livecodebench", REGISTRY, TASK, str(tmp_path), BenchmarkOptions(date_from="2024-08-01")
    ).problems
    assert [p.id for p in later] == ["abc123"]


def test_livecodebench_test_data_cannot_smuggle_objects():
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    payload = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        decode_private_cases(payload)


def test_gold_answers_from_solutions():
    assert gold_answer({"solution": "so 3 + 4 = 7\n#### 1,234"}, "solution_hashes") == "1234"
    assert gold_answer({"solution": "thus \\boxed{\\frac{1}{2}}."}, "solution_boxed") == "\\frac{1}{2}"
    assert gold_answer({"answer": ["$2$", "$3$"]}, "first_of_list") == "2, 3"
    assert gold_answer({"answer": 27.0}, "answer") == "27"


def test_bad_definitions_name_the_file_and_key(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\ntitle: B\nanswer_type: math\nscorer: code_tests\nprompt_template: '{problem}'\n")
    with pytest.raises(
        BenchmarkDefinitionError, match="broken.yaml: .*scorer 'code_tests' does not score answer_type 'math'"
    ):
        read_definition(path)
    path.write_text(
        "name: other\ntitle: B\nanswer_type: math\nscorer: math_verify\nprompt_template: '{problem}'\nlocal: {file: x.jsonl}\nextra_key: 1\n"
    )
    with pytest.raises(BenchmarkDefinitionError, match="extra_key: Extra inputs are not permitted"):
        read_definition(path)


@requires_shared(BENCHMARKS)
def test_rows_with_missing_fields_are_counted_with_file_line_and_field(tmp_path):
    lines = (BENCHMARKS / "aime24.jsonl").read_text().splitlines()[:4]
    broken = json.loads(lines[1])
    del broken["answer"]
    lines[1] = json.dumps(broken)
    lines[2] = lines[0]  # a duplicate id
    lines.append("{not json")
    (tmp_path / "aime24.jsonl").write_text("\n".join(lines) + "\n")
    loaded = resolve_benchmark("aime24", REGISTRY, TASK, str(tmp_path))
    assert [p.id for p in loaded.problems] == [json.loads(lines[0])["id"], json.loads(lines[3])["id"]]
    errors = [str(e) for e in loaded.errors]
    assert errors[0].endswith("aime24.jsonl:2: answer: missing field (mapped to 'answer')")
    assert "aime24.jsonl:3: id: duplicate id '2024-I-1'" in errors[1]
    assert "aime24.jsonl:5: <json>: not valid JSON" in errors[2]


@pytest.mark.parametrize("overrides", [["experiment=sky_t1_32b"], ["eval=reasoning"], ["eval=code"], ["eval=math"]])
def test_every_configured_suite_names_known_benchmarks(overrides):
    from sky_distill.config import stage_config
    from sky_distill.evaluate.benchmark_run import plan_run
    from sky_distill.evaluate.stage import check_names
    from tests.conftest import compose_config

    typed = stage_config(compose_config(overrides, stage="eval"), "eval")
    check_names(typed["eval"], REGISTRY, typed["task"])
    for name in typed["eval"].benchmarks:
        run = plan_run(name, typed["teacher"], REGISTRY.get(name), typed["eval"])
        assert run.sampling.max_tokens > 0 and run.model.prompt_template == "{problem}"
