"""Eval results in lm-evaluation-harness / lighteval layout, from summaries the real scorer computes."""

from __future__ import annotations

import json

from sky_distill.evaluate.harness_layout import write_harness_layout
from sky_distill.evaluate.scoring import summarize
from sky_distill.records import EvalSample, write_jsonl
from sky_distill.runs import mark_complete, write_json_atomic


def sample(problem: int, index: int, correct: bool) -> EvalSample:
    return EvalSample(
        benchmark="math500",
        problem_id=f"p{problem}",
        sample_index=index,
        model="sft",
        response=f"\\boxed{{{problem if correct else -1}}}",
        extracted=str(problem if correct else -1),
        correct=correct,
        status="correct" if correct else "incorrect",
        completion_tokens=5,
        finish_reason="stop",
        truncated=False,
    )


def test_results_and_samples_in_harness_layout(tmp_path):
    samples = [sample(p, i, correct=(p + i) % 3 != 0) for p in range(6) for i in range(2)]
    summary = {**summarize(samples, "math500", ks=(1, 2), resamples=200), "model": "sft", "benchmark": "math500"}
    out = tmp_path / "eval" / "sft" / "math500"
    write_jsonl(out / "samples.jsonl", samples)
    write_json_atomic(out / "summary.json", summary)
    mark_complete(out, summary)

    write_harness_layout(tmp_path / "eval", tmp_path / "harness")
    results = json.loads((tmp_path / "harness" / "sft" / "results_sft.json").read_text())
    entry = results["results"]["math500"]
    accuracy = sum(s.correct for s in samples) / len(samples)
    assert entry["exact_match,none"] == summary["eval/math500/avg@n"] == accuracy
    assert entry["exact_match_stderr,none"] == summary["eval/math500/avg@n_stderr"]
    assert entry["pass@2,none"] == summary["eval/math500/pass@2"]
    low, high = entry["exact_match_ci,none"]
    assert low <= accuracy <= high
    assert results["n-samples"]["math500"]["effective"] == 6 and results["configs"]["math500"]["repeats"] == 2
    lighteval = json.loads((tmp_path / "harness" / "sft" / "lighteval_results_sft.json").read_text())
    assert lighteval["results"]["custom|math500|0"]["exact_match"] == accuracy
    lines = [json.loads(line) for line in (tmp_path / "harness" / "sft" / "samples_math500.jsonl").open()]
    assert [line["doc"]["problem_id"] for line in lines] == [f"p{p}" for p in range(6)]
    assert lines[0]["resps"] == [["\\boxed{-1}"], ["\\boxed{0}"]] and lines[0]["exact_match"] == 0.5
