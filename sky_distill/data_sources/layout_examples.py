"""Files in each public layout, written from Sky-T1 traces (problem, gold, trace, thought, solution):
what the tests and the README's examples train on and re-verify, since no Hub is reachable here.

    python -m sky_distill.data_sources.layout_examples OUT_DIR [--rows N] [--fixture PATH] [--outputs]

Writes sky_t1_data_17k.json (JSON array, ShareGPT with a top-level system prompt and Sky-T1 markers,
as NovaSky-AI/Sky-T1_data_17k), bespoke_stratos.jsonl (the same, as bespokelabs/Bespoke-Stratos-17k),
openthoughts.parquet (the same plus the gold solution, as OpenThoughts-114k's metadata config),
sharegpt_classic.jsonl (human/gpt roles, system turn, <think> tags), openai_messages.jsonl,
s1k.parquet (question, solution, thinking_trajectories, attempt) and openr1_math.jsonl (problem,
answer, generations with correctness lists). With --outputs, also openthoughts_outputs.parquet: the
hand-labelled model outputs of ../shared/fixtures/model_outputs_dev.jsonl (right and wrong answers) in
the OpenThoughts layout, problems joined from ../shared/benchmarks, for re-verification.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

SKY_T1_SYSTEM = (
    "Your role as an assistant involves thoroughly exploring questions through a systematic long thinking "
    "process before providing the final precise and accurate solutions."
)
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DEFAULT_FIXTURE = SHARED / "fixtures" / "sky_t1_traces_sample.jsonl"


def _think(row: dict[str, Any]) -> str:
    return f"<think>\n{row['thought']}\n</think>\n\n{row['solution']}"


def _sharegpt_sky_t1(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "system": SKY_T1_SYSTEM,
        "conversations": [{"from": "user", "value": row["problem"]}, {"from": "assistant", "value": row["trace"]}],
    }


def _openthoughts(row: dict[str, Any]) -> dict[str, Any]:
    return {**_sharegpt_sky_t1(row), "ground_truth_solution": f"The answer is $\\boxed{{{row['gold']}}}$."}


def _sharegpt_classic(row: dict[str, Any]) -> dict[str, Any]:
    turns = [{"from": "system", "value": "Think step by step."}, {"from": "human", "value": row["problem"]}]
    return {"id": row["id"], "conversations": [*turns, {"from": "gpt", "value": _think(row)}]}


def _openai_messages(row: dict[str, Any]) -> dict[str, Any]:
    messages = [{"role": "user", "content": row["problem"]}, {"role": "assistant", "content": _think(row)}]
    return {"id": row["id"], "messages": messages, "answer": row["gold"]}


def _s1k(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "question": row["problem"],
        "solution": row["gold"],
        "thinking_trajectories": [row["thought"]],
        "attempt": row["solution"],
        "source_type": row["benchmark"],
    }


def _openr1_math(row: dict[str, Any]) -> dict[str, Any]:
    correct = str(row["correct"]).lower() == "true"
    wrong = _think({**row, "solution": "So the answer is $\\boxed{0}$."})
    return {
        "uuid": row["id"],
        "problem": row["problem"],
        "answer": row["gold"],
        "source": row["benchmark"],
        "generations": [_think(row), wrong],
        "correctness_math_verify": [correct, row["gold"].strip() == "0"],
        "is_reasoning_complete": [True, True],
    }


LAYOUT_FILES: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "sky_t1_data_17k.json": ("sharegpt", _sharegpt_sky_t1),
    "bespoke_stratos.jsonl": ("sharegpt", _sharegpt_sky_t1),
    "openthoughts.parquet": ("sharegpt", _openthoughts),
    "sharegpt_classic.jsonl": ("sharegpt", _sharegpt_classic),
    "openai_messages.jsonl": ("openai_messages", _openai_messages),
    "s1k.parquet": ("s1k", _s1k),
    "openr1_math.jsonl": ("openr1_math", _openr1_math),
}


def read_fixture(path: str | Path, rows: int) -> list[dict[str, Any]]:
    """The `rows` fixture rows with the shortest problems (in file order): prompts a tiny student's
    context holds, so every layout's examples keep response tokens to learn."""
    with open(path, encoding="utf-8") as handle:
        every = [json.loads(line) for line in handle]
    chosen = sorted(range(len(every)), key=lambda index: (len(every[index]["problem"]), index))[:rows]
    return [every[index] for index in sorted(chosen)]


def write_file(path: Path, rows: list[dict[str, Any]]) -> None:
    """A JSON array (.json), JSON Lines (.jsonl) or parquet file of `rows`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def write_layout_files(out_dir: str | Path, fixture: list[dict[str, Any]]) -> dict[str, Path]:
    """One file per layout in `out_dir`, each holding every fixture row."""
    out_dir = Path(out_dir)
    written = {}
    for name, (_, convert) in LAYOUT_FILES.items():
        write_file(out_dir / name, [convert(row) for row in fixture])
        written[name] = out_dir / name
    return written


def outputs_rows(outputs: str | Path, benchmarks_dir: str | Path) -> list[dict[str, Any]]:
    """Labelled model outputs as OpenThoughts rows: system, conversations, ground_truth_solution, source."""
    problems: dict[str, dict[str, Any]] = {}
    rows = []
    with open(outputs, encoding="utf-8") as handle:
        for line in handle:
            output = json.loads(line)
            if output["benchmark"] not in problems:
                with open(Path(benchmarks_dir) / f"{output['benchmark']}.jsonl", encoding="utf-8") as bench:
                    problems[output["benchmark"]] = {row["id"]: row for row in map(json.loads, bench)}
            problem = problems[output["benchmark"]][output["problem_id"]]["problem"]
            row = _sharegpt_sky_t1({"problem": problem, "trace": output["response"]})
            row.update(
                ground_truth_solution=f"$\\boxed{{{output['gold']}}}$",
                source=output["benchmark"],
                label=str(output["label"]),
                model=output["model"],
            )
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--fixture", default=str(DEFAULT_FIXTURE))
    parser.add_argument("--outputs", action="store_true", help="also write openthoughts_outputs.parquet")
    args = parser.parse_args()
    for name, path in write_layout_files(args.out_dir, read_fixture(args.fixture, args.rows)).items():
        print(f"{path}  ({LAYOUT_FILES[name][0]})")
    if args.outputs:
        path = Path(args.out_dir) / "openthoughts_outputs.parquet"
        write_file(path, outputs_rows(SHARED / "fixtures" / "model_outputs_dev.jsonl", SHARED / "benchmarks"))
        print(f"{path}  (sharegpt)")


if __name__ == "__main__":
    main()
