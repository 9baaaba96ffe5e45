"""The whole pipeline end to end at a tiny size, through the CLI, on the real engines: an
experiment over two seeds, its across-seed table, skipping on a re-run, and a replica of one
seed that must give the same outputs bit for bit (same machine, same thread count)."""

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
    "experiment=demo_kd",
    "seeds=[0,1]",
]
STUDENTS = ("sft_verified", "sft_unverified", "sft_kd_verified")
FIXED = ("tiny-teacher", "tiny-student")  # evaluated once for all seeds
MODELS = (*FIXED, *STUDENTS)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    command = [sys.executable, "-m", "sky_distill.cli", "pipeline", f"paths.root={root}", *TINY]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return root / "runs" / "demo_kd", result, command


@pytest.mark.parametrize("seed", [0, 1])
def test_every_stage_of_each_seed_completed_and_agrees(run, seed):
    experiment_dir, result, _ = run
    run_dir = experiment_dir / f"seed-{seed}"
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

    # each seed evaluates its own students; the teacher and base student are evaluated once, at the top
    assert sorted(path.name for path in (run_dir / "eval").iterdir()) == sorted(STUDENTS)
    for model in MODELS:
        where = experiment_dir if model in FIXED else run_dir
        summary = json.loads((where / "eval" / model / "arithmetic" / "summary.json").read_text())
        samples = read_jsonl_strict(where / "eval" / model / "arithmetic" / "samples.jsonl", EvalSample)
        assert len(samples) == 8 * 2 == summary["samples"]
        assert summary["eval/arithmetic/avg@n"] == pytest.approx(sum(s.correct for s in samples) / len(samples))
        assert summary["provenance"]["config"]["eval"]["sampling"]["n"] == 2
        assert summary["provenance"]["machine"]["torch_threads"] >= 1
        if model not in FIXED:
            assert summary["seed"] == seed and summary["provenance"]["config"]["seed"] == seed


def test_the_seeds_share_the_teacher_and_problems_but_not_the_samples(run):
    experiment_dir, _, _ = run
    traces = {
        seed: read_jsonl_strict(experiment_dir / f"seed-{seed}" / "generate" / "traces.jsonl", Trace) for seed in (0, 1)
    }
    assert {t.problem_id for t in traces[0]} == {t.problem_id for t in traces[1]}
    assert {t.model for t in traces[0]} == {t.model for t in traces[1]}  # one bootstrapped teacher
    assert [t.response for t in traces[0]] != [t.response for t in traces[1]]
    assert not (experiment_dir / "generate").exists()  # nothing per seed at the experiment's top


def test_the_table_aggregates_the_seeds(run):
    experiment_dir, result, _ = run
    seeds = json.loads((experiment_dir / "tables" / "seeds.json").read_text())
    assert seeds["seeds"] == 2
    block = seeds["benchmarks"]["arithmetic"]
    assert list(block["models"]) == list(MODELS) and block["problems"] == 8
    assert seeds["fixed"] == list(FIXED)
    for model in MODELS:
        stats = block["models"][model]
        per_seed = [
            json.loads(
                (
                    (experiment_dir if model in FIXED else experiment_dir / f"seed-{seed}")
                    / "eval"
                    / model
                    / "arithmetic"
                    / "summary.json"
                ).read_text()
            )
            for seed in (0, 1)
        ]
        assert stats["seed_means"] == pytest.approx([s["eval/arithmetic/avg@n"] for s in per_seed])
        assert stats["ci_low"] <= stats["mean"] <= stats["ci_high"]
    differences = block["differences"]
    assert list(differences) == [
        "sft_verified - sft_unverified",
        "sft_kd_verified - sft_verified",
        "sft_verified - tiny-student",
    ]
    first = differences["sft_verified - sft_unverified"]
    assert first["mean"] == pytest.approx(
        block["models"]["sft_verified"]["mean"] - block["models"]["sft_unverified"]["mean"]
    )
    assert 0 < first["p_value"] <= 1
    table = (experiment_dir / "tables" / "results.md").read_text()
    assert "tiny-teacher (teacher)" in table and "sft_verified - sft_unverified" in table
    assert table.strip() in result.stdout


def test_a_second_run_skips_complete_stages(run):
    run_dir, _, command = run
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    timings = json.loads((Path(run_dir) / "pipeline.json").read_text())["timings_s"]
    for seed in (0, 1):
        for stage in ("generate", "verify", *(f"train {name}" for name in STUDENTS), "eval"):
            assert timings[f"seed-{seed}: {stage}"] == 0.0, timings
    assert timings["eval"] == 0.0, timings  # the teacher's and base student's, shared


def without_timing(value):
    """A record without what legitimately differs between two runs: wall times and the run's name."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in ("elapsed_s", "run")}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def records(path):
    return [without_timing(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def test_a_replica_of_one_seed_is_bitwise_identical(run):
    """Same code, machine, threads and seed, in a second run directory: every output the same."""
    experiment_dir, _, command = run
    replica = [*command[:-1], "seeds=[0]", "run_name=replica"]
    result = subprocess.run(replica, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    original, copy = experiment_dir / "seed-0", experiment_dir.parent / "replica" / "seed-0"
    for name in ("generate/traces.jsonl", "verify/verdicts.jsonl", "verify/sft/verified.jsonl", "verify/sft/all.jsonl"):
        assert records(original / name) == records(copy / name), name
    stored, replayed = (read_chunks(store_directories(d / "generate" / "shards")) for d in (original, copy))
    assert stored.keys() == replayed.keys()
    assert all(
        (stored[k].ids == replayed[k].ids).all() and (stored[k].logprobs == replayed[k].logprobs).all() for k in stored
    )
    for name in STUDENTS:
        weights = f"train/{name}/final/model.safetensors"
        assert (original / weights).read_bytes() == (copy / weights).read_bytes(), name
    for model in MODELS:
        samples = f"eval/{model}/arithmetic/samples.jsonl"
        if model in FIXED:
            assert records(experiment_dir / samples) == records(copy.parent / samples), model
        else:
            assert records(original / samples) == records(copy / samples), model
