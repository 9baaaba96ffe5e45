"""Eval fixtures: the dev set of real model outputs scored through the harness as an external responses file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import BENCHMARKS, FIXTURES, compose_config

DEV_OUTPUTS = FIXTURES / "model_outputs_dev.jsonl"
DEV_BENCHMARKS = ["aime24", "amc23", "math500", "minerva_math", "olympiadbench"]


def score_responses_file(
    root: Path, path: Path, name: str, extra: list[str] | None = None, benchmarks: list[str] = DEV_BENCHMARKS
) -> dict:
    from sky_distill.evaluate.stage import run

    cfg = compose_config(
        [
            f"paths.root={root}",
            f"paths.benchmarks_dir={BENCHMARKS}",
            f"eval.responses.path={path}",
            f"eval.responses.name={name}",
            f"eval.benchmarks=[{','.join(benchmarks)}]",
            "eval.bootstrap_resamples=200",
            *(extra or []),
        ],
        stage="eval",
    )
    return run(cfg)


@pytest.fixture(scope="session")
def dev_run(tmp_path_factory, tiny_model_dir):
    """Two scored 'models' in one run directory: the dev outputs, and the same file with every
    response cut to its first half (a worse model, for comparisons and the notebook)."""
    if not (DEV_OUTPUTS.exists() and BENCHMARKS.exists()):
        pytest.skip(f"{DEV_OUTPUTS} or {BENCHMARKS} is not present")
    root = tmp_path_factory.mktemp("dev-run")
    # The dev set is a sample of each benchmark (partial) with 1-4 responses per problem in file order.
    tokenizer = [f"eval.responses.tokenizer={tiny_model_dir}", "eval.responses.allow_missing=true"]
    rows, seen = [], {}
    for line in DEV_OUTPUTS.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            key = (row["benchmark"], row["problem_id"])
            seen[key] = seen.get(key, -1) + 1
            rows.append({**row, "sample_index": seen[key]})
    numbered = root / "dev.jsonl"
    numbered.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = score_responses_file(root, numbered, "dev", tokenizer)
    cut = root / "dev_cut.jsonl"
    cut.write_text(
        "".join(json.dumps({**r, "response": r["response"][: len(r["response"]) // 2]}) + "\n" for r in rows)
    )
    score_responses_file(root, cut, "dev_cut", tokenizer)
    return root / "runs" / "demo", rows, result
