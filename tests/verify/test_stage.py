"""`sky-distill verify` end to end on a small real run: verdicts, curation, SFT files, report, resume."""

import json

import pytest

from sky_distill.records import Problem, SFTExample, Verdict, read_jsonl_strict, write_jsonl
from sky_distill.verify.batch import verify_responses
from sky_distill.verify.checks import VERIFIER_VERSION
from sky_distill.verify.stage import PARTIAL, _prepare_progress

pytestmark = pytest.mark.slow


def test_every_trace_gets_a_verdict_and_code_runs_in_the_sandbox(verify_run):
    run_dir, generated, report = verify_run
    verdicts = read_jsonl_strict(run_dir / "verify" / "verdicts.jsonl", Verdict)
    assert [(v.problem_id, v.sample_index) for v in verdicts] == [t.key for t in generated["traces"]]
    by_key = {(v.problem_id, v.sample_index): v for v in verdicts}
    assert by_key[("HumanEval/0", 0)].status == "correct" and by_key[("HumanEval/0", 1)].status == "incorrect"
    assert [by_key[("stdio-sum", i)].status for i in range(3)] == ["correct", "incorrect", "correct"]
    assert by_key[("gpqa-1", 0)].status == "correct" and by_key[("gpqa-1", 1)].extracted == "A"
    assert report["verify/statuses"]["correct"] == sum(v.correct for v in verdicts)
    assert report["sandbox"]["backend"] in ("bwrap", "landlock") and report["sandbox"]["contained"]
    assert report["verify/code/acceptance_rate"] == pytest.approx(4 / 9, abs=1e-3)  # 2 HumanEval, 2 stdio of 9


def test_malformed_problems_are_errors_naming_the_problem_and_counted(verify_run):
    run_dir, generated, report = verify_run
    verdicts = {v.problem_id: v for v in read_jsonl_strict(run_dir / "verify" / "verdicts.jsonl", Verdict)}
    for problem_id in generated["broken"]:
        assert verdicts[problem_id].status == "error"
        assert verdicts[problem_id].detail.startswith(f"problem {problem_id}: ")
    assert "gold answer cannot be parsed" in verdicts["broken-gold"].detail
    assert "tests.cases[0].output" in verdicts["broken-cases"].detail
    assert "not valid JSON" in verdicts["broken-json"].detail
    assert report["verify/errors"] == len(generated["broken"]) == report["verify/statuses"]["error"]
    assert all(f"problem {pid}:" in " ".join(report["verify/error_examples"]) for pid in generated["broken"])


def test_curation_removes_contaminated_duplicate_and_truncated_traces(verify_run):
    run_dir, generated, report = verify_run
    filtering = report["verify/filtering"]
    assert filtering["decontamination"]["problems_removed_by_benchmark"]["math500"] >= 1
    assert "copied-from-math500" in filtering["decontamination"]["examples"]
    assert filtering["exact_duplicate_traces"] == 1  # stdio-sum sample 2 repeats sample 0
    dropped = report["verify/dropped"]
    assert dropped["duplicate"] == 1 and dropped["excluded_problem"] >= 1
    assert dropped.get("truncated", 0) == sum(
        t.truncated for t in generated["traces"] if t.problem_id != "copied-from-math500"
    )

    kept = read_jsonl_strict(run_dir / "verify" / "sft" / "verified.jsonl", SFTExample)
    unverified = read_jsonl_strict(run_dir / "verify" / "sft" / "all.jsonl", SFTExample)
    kept_keys = {(e.problem_id, e.sample_index) for e in kept}
    assert ("copied-from-math500", 0) not in kept_keys and ("stdio-sum", 2) not in kept_keys
    assert ("stdio-sum", 0) in kept_keys and ("HumanEval/0", 1) not in kept_keys
    assert all(example.metadata["verdict"] == "correct" for example in kept)
    assert len(kept) == report["verify/kept"] < len(unverified) == report["verify/all_examples"]
    assert {(e.problem_id, e.sample_index) for e in unverified} >= kept_keys


def test_sft_records_are_chat_formatted_with_provenance_and_load_with_datasets(verify_run):
    from datasets import load_dataset

    run_dir, _, _ = verify_run
    path = run_dir / "verify" / "sft" / "verified.jsonl"
    kept = read_jsonl_strict(path, SFTExample)
    for example in kept:
        roles = [message.role for message in example.messages]
        assert roles == ["system", "user", "assistant"]
        assistant = example.messages[-1].content
        assert assistant.startswith("<think>\n") and "\n</think>\n\n" in assistant
        assert example.metadata["verifier_version"] == VERIFIER_VERSION and example.metadata["teacher"] == "dev-teacher"
    dataset = load_dataset("json", data_files=str(path), split="train")
    assert len(dataset) == len(kept)
    assert set(dataset.column_names) >= {"messages", "problem_id", "sample_index", "source", "metadata"}
    assert dataset[0]["messages"][-1]["role"] == "assistant"


def test_acceptance_is_reported_per_source_and_difficulty(verify_run):
    _, generated, report = verify_run
    groups = report["verify/by_group"]
    sources = {trace.source for trace in generated["traces"]}
    assert {f"source={source}" for source in sources} <= set(groups)
    assert groups["source=humaneval"] == {
        **groups["source=humaneval"],
        "samples": 4,
        "correct": 2,
        "acceptance_rate": 0.5,
    }
    assert "difficulty=easy" in groups and "answer_type=choice" in groups
    assert report["verify/lengths"]["all"]["count"] == len(generated["traces"])
    assert report["provenance"]["stage"] == "verify" and report["inputs"]["traces"]


def test_a_killed_run_resumes_from_its_partial_verdicts(tmp_path):
    problems = {"p": Problem(id="p", problem="1+1?", answer="2", source="t")}
    items = [("p", 0, "\\boxed{2}"), ("p", 1, "\\boxed{3}"), ("p", 2, "\\boxed{2}")]
    partial = tmp_path / PARTIAL
    planted = Verdict(
        problem_id="p", sample_index=1, correct=True, status="correct", verifier="x", verifier_version=VERIFIER_VERSION
    )
    stale = Verdict(
        problem_id="p", sample_index=2, correct=False, status="incorrect", verifier="x", verifier_version="old"
    )
    write_jsonl(partial, [planted, stale])
    with open(partial, "a") as handle:
        handle.write('{"problem_id": "p", "sample_ind')  # a line torn by the kill
    verdicts = verify_responses(items, problems, timeout_s=20, workers=1, progress_path=partial)
    assert [v.status for v in verdicts] == ["correct", "correct", "correct"]  # sample 1 reused (planted), 2 re-checked
    lines = [json.loads(line) for line in partial.read_text().splitlines()]
    assert [(line["sample_index"], line["verifier_version"]) for line in lines][-2:] == [
        (0, VERIFIER_VERSION),
        (2, VERIFIER_VERSION),
    ]


def test_partial_verdicts_from_other_settings_are_discarded(tmp_path):
    partial = _prepare_progress(tmp_path, {"timeout_s": 5})
    partial.write_text("{}\n")
    assert _prepare_progress(tmp_path, {"timeout_s": 5}).exists()
    assert not _prepare_progress(tmp_path, {"timeout_s": 9}).exists()
