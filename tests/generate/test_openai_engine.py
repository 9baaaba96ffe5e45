"""The API engine against a real vLLM OpenAI-compatible server on CPU: reasoning fields, seeds,
log-probs, injected faults, and the server killed and restarted in the middle of a run."""

import json
import subprocess
import sys
import threading
import time

import pytest

from sky_distill.config import GenerateConfig, ModelConfig, SamplingConfig
from sky_distill.generate.openai_engine import APIRejectedError
from sky_distill.generate.sampling import LazyEngine, generate_shard
from sky_distill.generate.topk_store import read_chunks, store_directories
from sky_distill.records import Problem, Trace, read_jsonl_strict
from tests.conftest import REPO
from tests.generate.servers import FaultyProxy, VLLMServer

pytestmark = pytest.mark.slow
SHARD = "shard-00000-of-00001"


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "vllm-server.log"
    process = VLLMServer(tiny_model_dir, log, "--reasoning-parser", "deepseek_r1")
    process.start()
    yield process
    process.kill()


def teacher(url: str, model_dir, **engine) -> ModelConfig:
    options = {
        "backend": "openai",
        "base_url": url,
        "served_model_name": str(model_dir),
        "concurrency": 4,
        "retry_backoff_s": 0.2,
        "retry_backoff_max_s": 2.0,
        **engine,
    }
    return ModelConfig(name="tiny-api", path=str(model_dir), thought_format="reasoning_field", engine=options)


def problems(count: int) -> list[Problem]:
    return [Problem(id=f"p{i:03d}", problem=f"Compute {i} + {2 * i}.", source="t") for i in range(count)]


def generate(model, directory, items, n=2, max_tokens=24, **sampling):
    config = GenerateConfig(
        sampling=SamplingConfig(n=n, temperature=1.0, max_tokens=max_tokens, **sampling), flush_every=1
    )
    engine = LazyEngine(model, seed=0)
    try:
        return generate_shard(items, model, config, directory, engine)
    finally:
        engine.close()


def traces(directory) -> dict:
    stored = read_jsonl_strict(directory / f"{SHARD}.jsonl", Trace)
    keys = [trace.key for trace in stored]
    assert len(keys) == len(set(keys)), "a sample was written twice"
    return {trace.key: trace for trace in stored}


def outputs(directory) -> dict:
    return {key: (trace.reasoning, trace.response) for key, trace in traces(directory).items()}


def test_reasoning_is_recorded_and_seeds_fix_the_traces(server, tiny_model_dir, tmp_path):
    items = problems(6)
    summary = generate(teacher(server.url, tiny_model_dir), tmp_path / "a", items)
    assert summary["complete"] and summary["gen/samples"] == 12 and summary["gen/failed_requests"] == 0
    stored = traces(tmp_path / "a")
    trace = stored[("p001", 1)]
    assert trace.engine == "openai" and trace.engine_version == f"openai-api@127.0.0.1:{server.port}"
    assert trace.thought_format == "reasoning_field" and trace.messages[0].content == "Compute 1 + 2."
    assert trace.prompt_tokens > 0 and 0 < trace.completion_tokens <= 24
    # The server's reasoning parser put the thinking (all of it: the model never closes it) in its own field.
    assert all(t.reasoning for t in stored.values()) and sum(t.response == "" for t in stored.values()) >= 10
    generate(teacher(server.url, tiny_model_dir, concurrency=1), tmp_path / "b", items)
    generate(teacher(server.url, tiny_model_dir), tmp_path / "c", items, seed=1)
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")  # same seed, other batching: same traces
    assert outputs(tmp_path / "a") != outputs(tmp_path / "c")


def test_completions_api_with_logprobs_and_token_ids(server, tiny_model_dir, byte_tokenizer, tmp_path):
    model = teacher(
        server.url,
        tiny_model_dir,
        use_chat_api=False,
        tokenizer=str(tiny_model_dir),
        vllm_server=True,
        max_model_len=512,
    )
    model = model.model_copy(update={"thought_format": "none"})
    items = [*problems(3), Problem(id="long", problem="x" * 600, source="t")]
    summary = generate(model, tmp_path, items, logprobs=2)
    assert summary["complete"] and summary["gen/prompt_errors"] == 1  # found locally, never sent
    assert "prompt of 6" in summary["error_examples"][0] and "max_model_len 512" in summary["error_examples"][0]
    rows = read_chunks(store_directories(tmp_path))  # id-keyed log-probs go to the compact top-k store
    written = traces(tmp_path)
    assert set(rows) == set(written)
    for key, trace in written.items():
        assert trace.logprobs is None
        assert len(trace.token_ids) == len(rows[key]) == trace.completion_tokens
        assert rows[key].sampled.tolist() == trace.token_ids
        decoded = byte_tokenizer.decode(trace.token_ids, skip_special_tokens=True)
        # The server's text leaves out a multi-byte character cut short at the end; the ids keep it.
        assert decoded.startswith(trace.response) and set(decoded[len(trace.response) :]) <= {"\ufffd"}
        top = rows[key].logprobs.astype("float32")
        assert rows[key].ids.shape == (len(trace.token_ids), 2) and (rows[key].ids >= 0).all()
        assert (top <= 0).all() and (top[:, 0] >= top[:, 1]).all()


def test_a_prompt_too_long_for_the_server_is_a_prompt_error_and_a_wrong_model_stops_the_run(
    server, tiny_model_dir, tmp_path
):
    items = [*problems(2), Problem(id="long", problem="y" * 700, source="t")]  # no local tokenizer: the server says
    summary = generate(teacher(server.url, tiny_model_dir), tmp_path, items)
    assert summary["complete"] and summary["done_samples"] == 4 and summary["gen/failed_requests"] == 0
    assert summary["gen/prompt_errors"] == 1 and summary["excluded_problems"].keys() == {"long"}
    row = json.loads((tmp_path / f"{SHARD}.errors.jsonl").read_text())
    assert row["kind"] == "prompt" and row["problem_id"] == "long"
    assert "<problems>:3: problem: id 'long': HTTP 400" in row["message"] and "context length" in row["message"]
    with pytest.raises(APIRejectedError, match="HTTP 404.*served_model_name"):
        generate(teacher(server.url, "no-such-model"), tmp_path / "wrong", problems(2))


def test_injected_faults_are_retried_and_a_hopeless_request_is_reported(server, tiny_model_dir, tmp_path):
    items = problems(8)
    generate(teacher(server.url, tiny_model_dir), tmp_path / "direct", items)
    faults = [429, 503, 502, "drop", "stall:4"]
    hopeless, refused = ("p005", 1), ("p006", 0)

    def plan(body):
        if body["seed"] == reference[hopeless].seed:
            return [500] * 100  # retried until the retries run out
        if body["seed"] == reference[refused].seed:
            return [422]  # not worth a retry
        return [faults[body["seed"] % len(faults)]]  # every other request fails once, then succeeds

    reference = traces(tmp_path / "direct")
    with FaultyProxy(server.url, plan) as proxy:
        model = teacher(proxy.url, tiny_model_dir, max_retries=3, request_timeout_s=2.0)
        summary = generate(model, tmp_path / "faulty", items)
    assert set(proxy.faults) >= {"429", "503", "502", "drop", "stall:4", "500", "422"}
    assert summary["gen/failed_requests"] == 2 and summary["done_samples"] == 14
    assert summary["gen/api_retries"] == 14 + 3
    rows = {
        (row["problem_id"], row["sample_index"]): row["message"]
        for row in map(json.loads, (tmp_path / "faulty" / f"{SHARD}.errors.jsonl").read_text().splitlines())
    }
    assert rows.keys() == {hopeless, refused}
    assert rows[hopeless].startswith("gave up after 4 attempts: HTTP 500") and rows[refused].startswith("HTTP 422")
    again = generate(teacher(server.url, tiny_model_dir), tmp_path / "faulty", items)  # a re-run retries it
    assert again["complete"] and again["gen/new_samples"] == 2
    assert outputs(tmp_path / "faulty") == outputs(tmp_path / "direct")


def test_the_server_killed_and_restarted_mid_run_loses_and_duplicates_nothing(server, tiny_model_dir, tmp_path):
    items = problems(40)
    # ~15 request starts a second; retries ride out a restart of up to ~3 minutes
    model = teacher(server.url, tiny_model_dir, requests_per_minute=900, max_retries=100)
    generate(teacher(server.url, tiny_model_dir), tmp_path / "reference", items)
    outcome = {}
    run = threading.Thread(target=lambda: outcome.update(generate(model, tmp_path / "run", items)))
    run.start()
    shard = tmp_path / "run" / f"{SHARD}.jsonl"
    while not shard.exists() or len(shard.read_text().splitlines()) < 10:
        assert run.is_alive(), outcome
        time.sleep(0.05)
    server.kill()
    written_before_restart = len(shard.read_text().splitlines())
    time.sleep(2)
    server.start()
    run.join(timeout=600)
    assert not run.is_alive()
    assert written_before_restart < 80  # the kill did land mid-run
    assert outcome["complete"] and outcome["gen/failed_requests"] == 0 and outcome["gen/api_retries"] > 0
    assert outputs(tmp_path / "run") == outputs(tmp_path / "reference")


def sky_distill_generate(*overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sky_distill.cli", "generate", *overrides]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_cli_reports_every_bad_problem_record_and_generates_the_rest(server, tiny_model_dir, tmp_path):
    rows = [
        {"id": "a", "problem": "Compute 1 + 1."},
        {"problem": "no id"},
        {"id": "b", "problem": "  "},
        {"id": "a", "problem": "Compute 2 + 2."},
        {"id": "c", "problem": "z" * 600},
        {"id": "d", "problem": "Compute 3 + 3."},
    ]
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(row) + "\n" for row in rows))
    common = [f"paths.root={tmp_path}", "task.kind=jsonl", "task.name=mine", "generate.sampling.n=2"]
    api = [
        "teacher=vllm_server",
        f"teacher.engine.base_url={server.url}",
        f"teacher.engine.served_model_name={tiny_model_dir}",
        f"teacher.engine.tokenizer={tiny_model_dir}",
        "teacher.engine.max_model_len=512",
    ]
    result = sky_distill_generate(*common, f"+task.path={tasks}", *api)
    assert result.returncode == 0, result.stderr[-3000:]
    stage_dir = tmp_path / "runs" / "demo" / "generate"
    complete = json.loads((stage_dir / "COMPLETE.json").read_text())
    assert complete["gen/problems"] == 2 and complete["gen/samples"] == 4
    assert complete["gen/problem_errors"] == 3 and complete["gen/prompt_errors"] == 1
    errors = [json.loads(line) for line in (stage_dir / "errors.jsonl").read_text().splitlines()]
    assert [(e["kind"], e.get("line"), e.get("field"), e.get("problem_id")) for e in errors] == [
        ("problem", 2, "id", None),
        ("problem", 3, "problem", None),
        ("problem", 4, "id", None),
        ("prompt", None, None, "c"),
    ]
    assert errors[3]["message"].startswith(f"{tasks}:5: problem: id 'c': prompt of")
    assert '"gen/problem_errors": 3' in result.stdout

    tasks.write_text(json.dumps({"problem": "no id at all"}) + "\n")
    empty = sky_distill_generate(*common, f"+task.path={tasks}", "run_name=empty", *api)
    assert empty.returncode == 1
    assert empty.stderr.strip().splitlines()[-1] == (
        f"sky-distill generate: error: task 'mine' has no usable problems in split 'train' "
        f"(1 records rejected, e.g. {tasks}:1: id: missing field (mapped to 'id'))"
    )
