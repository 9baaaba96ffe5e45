"""The whole pipeline end to end at a tiny size, through the CLI, on the real engines."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sky_distill.generate.topk_store import read_chunks, store_directories
from sky_distill.records import EvalSample, Problem, SFTExample, Trace, Verdict, read_jsonl_strict
from sky_distill.tracking import read_metrics
from sky_distill.verify.math import is_correct

pytestmark = pytest.mark.slow

TINY = [
    "task.min_digits=1",
    "task.max_digits=2",
    "task.train_size=32",
    "task.test_size=8",
    "teacher.bootstrap.num_examples=2000",
    "teacher.bootstrap.max_steps=500",
    "teacher.bootstrap.batch_size=16",
    "teacher.bootstrap.learning_rate=3e-3",
    "student.bootstrap.num_examples=500",
    "student.bootstrap.max_steps=10",
    "student.bootstrap.batch_size=16",
    "generate.sampling.n=2",
    "generate.sampling.max_tokens=64",
    "eval.sampling.n=2",
    "eval.sampling.max_tokens=64",
    "train.max_steps=6",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    command = [sys.executable, "-m", "sky_distill.cli", "pipeline", f"paths.root={root}", *TINY]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return root / "runs" / "demo", result, command


def test_every_stage_completed_and_agrees(run):
    run_dir, result, _ = run
    problems = {p.id: p for p in read_jsonl_strict(run_dir / "generate" / "problems.jsonl", Problem)}
    traces = read_jsonl_strict(run_dir / "generate" / "traces.jsonl", Trace)
    assert len(problems) == 32
    assert sorted(t.key for t in traces) == sorted((pid, i) for pid in problems for i in range(2))

    verdicts = read_jsonl_strict(run_dir / "verify" / "verdicts.jsonl", Verdict)
    assert [(v.problem_id, v.sample_index) for v in verdicts] == [t.key for t in traces]
    report = json.loads((run_dir / "verify" / "report.json").read_text())
    assert report["verify/statuses"].get("correct", 0) == sum(v.correct for v in verdicts) > 0

    kept = read_jsonl_strict(run_dir / "verify" / "sft" / "verified.jsonl", SFTExample)
    assert len(kept) == report["verify/kept"] == sum(v.correct for v in verdicts)
    for example in kept:  # every kept trace verifies against its problem's gold answer
        assert is_correct(example.messages[-1].content, problems[example.problem_id].answer)
    unfiltered = read_jsonl_strict(run_dir / "verify" / "sft" / "all.jsonl", SFTExample)
    assert len(unfiltered) == len([t for t in traces if not t.truncated])

    for name in ("sft_verified", "sft_unverified", "sft_kd_verified"):
        complete = json.loads((run_dir / "train" / name / "COMPLETE.json").read_text())
        assert complete["steps"] == 6
        assert (run_dir / "train" / name / "final" / "model.safetensors").exists()
    assert json.loads((run_dir / "train" / "sft_verified" / "COMPLETE.json").read_text())["train/data/kept"] == len(
        kept
    )
    # the KD student read the top-k rows generation stored for exactly the verified traces
    stored = read_chunks(store_directories(run_dir / "generate" / "shards"))
    assert set(stored) == {t.key for t in traces} and all(rows.ids.shape[1] == 16 for rows in stored.values())
    kd_rows = read_metrics(run_dir / "train" / "sft_kd_verified" / "metrics.jsonl")
    assert all(row["train/loss/kd"] > 0 and row["train/loss/ce"] > 0 for row in kd_rows)
    assert "train/loss/kd" not in read_metrics(run_dir / "train" / "sft_verified" / "metrics.jsonl")[-1]

    for model in ("tiny-teacher", "tiny-student", "sft_verified", "sft_unverified", "sft_kd_verified"):
        summary = json.loads((run_dir / "eval" / model / "arithmetic" / "summary.json").read_text())
        samples = read_jsonl_strict(run_dir / "eval" / model / "arithmetic" / "samples.jsonl", EvalSample)
        assert len(samples) == 8 * 2 == summary["samples"]
        assert summary["eval/arithmetic/avg@n"] == pytest.approx(sum(s.correct for s in samples) / len(samples))
        assert summary["provenance"]["config"]["eval"]["sampling"]["n"] == 2

    table = (run_dir / "tables" / "results.md").read_text()
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == [
        "tiny-teacher",
        "tiny-student",
        "sft_verified",
        "sft_unverified",
        "sft_kd_verified",
    ]
    assert table.strip() in result.stdout


def test_a_second_run_skips_complete_stages(run):
    run_dir, _, command = run
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    timings = json.loads((Path(run_dir) / "pipeline.json").read_text())["timings_s"]
    for label in ("generate", "verify", "train sft_verified", "train sft_unverified", "train sft_kd_verified", "eval"):
        assert timings[label] == 0.0, timings
