"""The sandbox that scored code is recorded: eval summaries and tables say which backend ran, and what it left open."""

import json

import pytest

from sky_distill.evaluate.tables import build_table, collect_summaries, csv_table, markdown_table
from tests.conftest import BENCHMARKS
from tests.evaluate.conftest import score_responses_file

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not BENCHMARKS.exists(), reason=f"{BENCHMARKS} is not present")]


def test_a_named_unsafe_backend_is_recorded_in_the_summary_and_the_table(tmp_path):
    rows = []
    with open(BENCHMARKS / "humaneval.jsonl") as handle:
        for line in list(handle)[:3]:
            row = json.loads(line)
            rows.append(
                {
                    "id": row["id"],
                    "benchmark": "humaneval",
                    "response": f"```python\n{row['prompt']}{row['answer']}\n```",
                }
            )
    path = tmp_path / "code.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    extra = ["verify.sandbox.backend=unsafe_process", "eval.responses.allow_missing=true"]  # 3 of its problems
    result = score_responses_file(tmp_path, path, "unsafe", extra, ["humaneval"])
    assert result["unsafe"]["humaneval"]["avg@n"] == 1.0  # named: it runs
    (summary_path,) = tmp_path.rglob("humaneval/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["sandbox"]["backend"] == "unsafe_process" and summary["sandbox"]["contained"] is False
    summaries = collect_summaries(summary_path.parents[2])
    markdown = markdown_table(build_table(summaries))
    assert "Code scored in the sandbox: humaneval: unsafe_process (inactive: " in markdown
    assert "read_only_filesystem" in markdown.splitlines()[-1]
    assert ',"unsafe_process (inactive: ' in csv_table(summaries)
