"""The stage's bookkeeping on a stand-in engine: resume, failures, bad prompts, settings, sharding, merge."""

import json

import pytest

from sky_distill.config import GenerateConfig, ModelConfig, SamplingConfig
from sky_distill.generate.merge import IncompleteShardsError, MismatchedShardsError, merge_shards
from sky_distill.generate.sampling import generate_shard
from sky_distill.generate.shards import select_shard, shard_name, shard_of
from sky_distill.generate.store import ShardBusyError, TraceStore
from sky_distill.records import Problem, Trace, read_jsonl, read_jsonl_strict, write_jsonl
from sky_distill.settings_guard import SettingsChangedError, changed_keys
from tests.generate.fakes import FakeEngine, FakeLazyEngine

MODEL = ModelConfig(name="fake", path="fake-model", thought_format="none")


def problems(count: int, prefix: str = "p") -> list[Problem]:
    return [
        Problem(id=f"{prefix}{i}", problem=f"Compute {i} + {i}.", answer=str(2 * i), source="t") for i in range(count)
    ]


def config(n: int = 3, temperature: float = 1.0, index: int = 0, count: int = 1, **sampling) -> GenerateConfig:
    return GenerateConfig(
        sampling=SamplingConfig(n=n, temperature=temperature, max_tokens=8, **sampling),
        shard_index=index,
        shard_count=count,
        flush_every=2,
    )


def stored(path) -> dict:
    traces = read_jsonl_strict(path, Trace)
    keys = [trace.key for trace in traces]
    assert len(keys) == len(set(keys)), "a sample was written twice"
    return {trace.key: trace.response for trace in traces}


SHARD = "shard-00000-of-00001"


def test_a_resumed_shard_equals_an_uninterrupted_one(tmp_path):
    items = problems(6)
    generate_shard(items, MODEL, config(), tmp_path / "full", FakeLazyEngine(FakeEngine()))
    complete = stored(tmp_path / "full" / f"{SHARD}.jsonl")
    lines = (tmp_path / "full" / f"{SHARD}.jsonl").read_text().splitlines(keepends=True)
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    (crashed / f"{SHARD}.jsonl").write_text("".join(lines[:7]) + lines[7][:25])  # whole lines, then a torn one
    engine = FakeEngine()
    summary = generate_shard(items, MODEL, config(), crashed, FakeLazyEngine(engine))
    assert summary["gen/torn_bytes_discarded"] == 25
    assert summary["complete"] and summary["gen/new_samples"] == 18 - 7
    assert len(engine.calls[0]) == 11  # only the missing samples were asked for
    assert stored(crashed / f"{SHARD}.jsonl") == complete


def test_failed_requests_are_counted_reported_and_retried(tmp_path):
    items = problems(4)
    failing = {("p1", 0), ("p3", 2)}
    summary = generate_shard(items, MODEL, config(), tmp_path, FakeLazyEngine(FakeEngine(fail=failing)))
    assert summary["gen/failed_requests"] == 2 and not summary["complete"]
    assert summary["done_samples"] == 10 and set(stored(tmp_path / f"{SHARD}.jsonl")).isdisjoint(failing)
    rows = [json.loads(line) for line in (tmp_path / f"{SHARD}.errors.jsonl").read_text().splitlines()]
    assert {(row["problem_id"], row["sample_index"]) for row in rows if row["kind"] == "request"} == failing
    assert all("HTTP 500" in row["message"] for row in rows)
    engine = FakeEngine()
    again = generate_shard(items, MODEL, config(), tmp_path, FakeLazyEngine(engine))
    assert again["complete"] and again["gen/failed_requests"] == 0
    assert sorted(engine.calls[0]) == sorted(failing)
    assert (tmp_path / f"{SHARD}.errors.jsonl").read_text() == ""  # the errors file describes the last run


def test_unpromptable_problems_are_errors_named_by_file_and_line_and_remembered(tmp_path):
    items = [
        *problems(2),
        Problem(id="long", problem="x" * 100, source="t"),
        Problem(id="mc", problem="Which?", source="t", answer_type="choice"),  # no choices to list
    ]
    model = MODEL.model_copy(update={"prompt_templates": {"choice": "{problem}\n{choices}"}})
    locations = {"long": ("tasks.jsonl", 3), "mc": ("tasks.jsonl", 4)}
    summary = generate_shard(items, model, config(n=2), tmp_path, FakeLazyEngine(FakeEngine()), locations=locations)
    assert summary["complete"] and summary["expected_samples"] == 4 and summary["gen/prompt_errors"] == 2
    messages = sorted(summary["error_examples"])
    assert messages[0].startswith("tasks.jsonl:3: problem: id 'long': prompt of 100 tokens")
    assert "max_model_len 64" in messages[0]
    assert messages[1].startswith("tasks.jsonl:4: choices: id 'mc'")
    kinds = [json.loads(line)["kind"] for line in (tmp_path / f"{SHARD}.errors.jsonl").read_text().splitlines()]
    assert kinds == ["prompt", "prompt"]
    lazy = FakeLazyEngine(FakeEngine())
    again = generate_shard(items, model, config(n=2), tmp_path, lazy, locations=locations)
    assert again["complete"] and again["gen/prompt_errors"] == 2
    assert lazy.gets == 0  # known bad prompts need no engine start to be found again


def test_problem_load_errors_go_to_the_errors_file(tmp_path):
    from sky_distill.records import RecordError

    load_errors = [RecordError("tasks.jsonl", 7, "id", "duplicate id 'p1' (first at tasks.jsonl:2)")]
    summary = generate_shard(problems(1), MODEL, config(), tmp_path, FakeLazyEngine(FakeEngine()), load_errors)
    assert summary["gen/problem_errors"] == 1
    row = json.loads((tmp_path / f"{SHARD}.errors.jsonl").read_text())
    assert row == {
        "kind": "problem",
        "path": "tasks.jsonl",
        "line": 7,
        "field": "id",
        "message": load_errors[0].message,
    }


def test_other_settings_are_refused_more_samples_are_not(tmp_path):
    items = problems(3)
    generate_shard(items, MODEL, config(n=2), tmp_path, FakeLazyEngine(FakeEngine()))
    with pytest.raises(SettingsChangedError, match=r"sampling.temperature \(1.0 -> 0.5\)"):
        generate_shard(items, MODEL, config(n=2, temperature=0.5), tmp_path, FakeLazyEngine(FakeEngine()))
    other_prompt = MODEL.model_copy(update={"system_prompt": "Be brief."})
    with pytest.raises(SettingsChangedError, match="prompt.system_prompt"):
        generate_shard(items, other_prompt, config(n=2), tmp_path, FakeLazyEngine(FakeEngine()))
    engine = FakeEngine()
    summary = generate_shard(items, MODEL, config(n=4), tmp_path, FakeLazyEngine(engine))
    assert summary["complete"] and sorted(index for _, index in engine.calls[0]) == [2, 2, 2, 3, 3, 3]
    assert changed_keys({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 0}) == ["a.c", "d"]


def test_without_per_sample_seeds_the_engine_seed_alone_decides(tmp_path):
    from sky_distill.generate.openai_protocol import request_body
    from sky_distill.generate.sampling import plan_samples

    items = problems(2)
    missing = {(p.id, i) for p in items for i in range(3)}
    seeded, _ = plan_samples(items, MODEL, SamplingConfig(n=3), missing)
    unseeded, _ = plan_samples(items, MODEL, SamplingConfig(n=3), missing, per_sample_seeds=False)
    assert len({r.seed for r in seeded}) == 6 and {r.seed for r in unseeded} == {None}
    api = ModelConfig(name="a", path="m", engine={"backend": "openai", "base_url": "http://x/v1"}).engine
    assert "seed" not in request_body(unseeded[0], SamplingConfig(), api, "m", chat=True)
    free = GenerateConfig(sampling=SamplingConfig(n=3, max_tokens=8), per_sample_seeds=False)
    generate_shard(items, MODEL, free, tmp_path, FakeLazyEngine(FakeEngine()))
    assert {trace.seed for trace in read_jsonl_strict(tmp_path / f"{SHARD}.jsonl", Trace)} == {None}
    with pytest.raises(SettingsChangedError, match=r"per_sample_seeds \(False -> True\)"):
        generate_shard(items, MODEL, config(n=3), tmp_path, FakeLazyEngine(FakeEngine()))


def test_a_shard_has_one_writer(tmp_path):
    with (
        TraceStore(tmp_path / "s.jsonl"),
        pytest.raises(ShardBusyError, match=r"s.jsonl is being written by pid \d+"),
    ):
        TraceStore(tmp_path / "s.jsonl")
    with TraceStore(tmp_path / "s.jsonl"):  # released on close
        pass


def test_sharding_is_a_stable_partition():
    items = problems(200)
    shards = [select_shard(items, index, 7) for index in range(7)]
    assert sorted(p.id for shard in shards for p in shard) == sorted(p.id for p in items)
    assert all(12 <= len(shard) <= 45 for shard in shards)  # a hash spreads them
    # The same ids land in the same shard in every process (no salted hash()) and every release:
    # a changed assignment would split a half-done run's problems differently.
    assert [shard_of(f"p{i}", 7) for i in range(8)] == [4, 2, 6, 2, 0, 4, 6, 0]
    assert shard_name(3, 16) == "shard-00003-of-00016"


def run_shards(stage_dir, items, count, n=2, engine=None):
    for index in range(count):
        mine = select_shard(items, index, count)
        write_jsonl(stage_dir / "problems" / f"{shard_name(index, count)}.jsonl", mine)
        generate_shard(
            mine,
            MODEL,
            config(n=n, index=index, count=count),
            stage_dir / "shards",
            FakeLazyEngine(engine or FakeEngine()),
        )


def test_merge_writes_every_sample_once_in_order(tmp_path):
    items = problems(20)
    run_shards(tmp_path, items, 3)
    shard_file = tmp_path / "shards" / f"{shard_name(1, 3)}.jsonl"
    lines = shard_file.read_text().splitlines(keepends=True)
    shard_file.write_text("".join(lines) + lines[0] + "{not json\n")  # a duplicate and a corrupt line
    summary = merge_shards(tmp_path, 3, provenance={"test": True})
    traces = read_jsonl_strict(tmp_path / "traces.jsonl", Trace)
    keys = [trace.key for trace in traces]
    assert keys == sorted((p.id, i) for p in items for i in range(2))
    assert summary["gen/samples"] == 40 and summary["gen/duplicate_lines"] == 1
    assert summary["gen/unreadable_lines"] == 1 and "not valid JSON" in summary["unreadable_examples"][0]
    assert summary["gen/problems"] == 20 and len(read_jsonl_strict(tmp_path / "problems.jsonl", Problem)) == 20
    assert json.loads((tmp_path / "COMPLETE.json").read_text())["traces_fingerprint"] == summary["traces_fingerprint"]


def test_merge_refuses_incomplete_shards_and_names_them(tmp_path):
    items = problems(20)
    run_shards(tmp_path, items, 4, engine=FakeEngine(fail={(p.id, 0) for p in select_shard(items, 2, 4)}))
    (tmp_path / "shards" / f"{shard_name(3, 4)}.summary.json").unlink()
    (tmp_path / "shards" / f"{shard_name(3, 4)}.jsonl").unlink()
    with pytest.raises(IncompleteShardsError) as raised:
        merge_shards(tmp_path, 4, provenance={})
    message = str(raised.value)
    failed = len(select_shard(items, 2, 4))
    assert f"shard-00002-of-00004: {2 * failed - failed} of {2 * failed} samples" in message
    assert "shard-00003-of-00004: not run" in message
    assert "shard-00000" not in message and "shard-00001" not in message
    assert not (tmp_path / "COMPLETE.json").exists()


def test_merge_refuses_shards_whose_file_lost_samples(tmp_path):
    items = problems(6)
    run_shards(tmp_path, items, 1)
    path = tmp_path / "shards" / f"{SHARD}.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-2]))
    with pytest.raises(IncompleteShardsError, match=f"{SHARD}: 10 of 12 samples in its file"):
        merge_shards(tmp_path, 1, provenance={})


def test_merge_refuses_shards_made_with_other_settings(tmp_path):
    items = problems(10)
    run_shards(tmp_path, items, 2)
    other = tmp_path / "shards" / f"{shard_name(1, 2)}.summary.json"
    summary = json.loads(other.read_text())
    other.write_text(json.dumps({**summary, "settings_fingerprint": "0000"}))
    with pytest.raises(MismatchedShardsError, match="settings 0000: shard-00001-of-00002"):
        merge_shards(tmp_path, 2, provenance={})


def test_merge_keeps_only_the_samples_asked_for(tmp_path):
    items = problems(5)
    run_shards(tmp_path, items, 1, n=3)
    run_shards(tmp_path, items, 1, n=2)  # fewer samples per problem: the third ones stay on disk
    summary = merge_shards(tmp_path, 1, provenance={})
    traces, _ = read_jsonl(tmp_path / "traces.jsonl", Trace)
    assert len(traces) == 10 and summary["gen/extra_lines_ignored"] == 5


def test_the_merge_command_merges_once_and_again_when_a_shard_changed(tmp_path):
    from sky_distill.generate import merge_stage
    from tests.conftest import compose_config

    stage_dir = tmp_path / "runs" / "demo" / "generate"
    items = problems(9)
    run_shards(stage_dir, items, 3)
    cfg = compose_config([f"paths.root={tmp_path}", "generate.shard_count=3"], stage="merge")
    first = merge_stage.run(cfg)
    assert first["gen/samples"] == 18 and "provenance" not in first
    stamp = (stage_dir / "COMPLETE.json").stat().st_mtime_ns
    assert merge_stage.run(cfg)["traces_fingerprint"] == first["traces_fingerprint"]
    assert (stage_dir / "COMPLETE.json").stat().st_mtime_ns == stamp  # nothing changed: not merged again
    run_shards(stage_dir, items, 3, n=3)  # one more sample per problem
    assert merge_stage.run(cfg)["gen/samples"] == 27


def test_sigterm_writes_the_buffered_samples_before_exiting(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    script = f"""
import os, signal
from pathlib import Path
from sky_distill.generate.sampling import generate_shard
from sky_distill.generate.stage import exit_on_sigterm
from sky_distill.config import GenerateConfig, ModelConfig, SamplingConfig
from sky_distill.records import Problem
from tests.generate.fakes import FakeEngine, FakeLazyEngine

class Terminated(FakeEngine):
    def generate(self, requests, sampling):
        for count, result in enumerate(super().generate(requests, sampling)):
            yield result
            if count == 4:  # five samples buffered, none written yet (flush_every=100)
                os.kill(os.getpid(), signal.SIGTERM)

exit_on_sigterm()
problems = [Problem(id=f"p{{i}}", problem="x", source="t") for i in range(4)]
config = GenerateConfig(sampling=SamplingConfig(n=3, max_tokens=4), flush_every=100, flush_seconds=1000)
generate_shard(problems, ModelConfig(name="f", path="f"), config, Path({str(tmp_path)!r}), FakeLazyEngine(Terminated()))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 128 + 15, result.stderr
    assert len(stored(tmp_path / f"{SHARD}.jsonl")) == 5


def test_a_prompt_too_long_for_the_model_is_an_error_keyed_by_its_problem():
    """Budget forcing plans and renders as generate_shard does: errors by problem id."""
    from sky_distill.generate.sampling import plan_samples, render_prompts

    items = [*problems(2), Problem(id="long", problem="x" * 100, source="t")]
    requests, _ = plan_samples(items, MODEL, SamplingConfig(n=2), {(p.id, i) for p in items for i in range(2)})
    assert len(requests) == 6
    rendered, errors = render_prompts(requests, FakeEngine(max_model_len=64), 8)
    assert len(rendered) == 4 and [(pid, e.field) for pid, e in errors.items()] == [("long", "problem")]
