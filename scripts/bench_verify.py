"""Verification throughput and agreement, measured side by side in one run.

    python scripts/bench_verify.py [--workers 2] [--sandbox-runs 40] [--repeat 1] [--by-kind]
    python scripts/bench_verify.py --sandbox-only [--sandbox-backend landlock]

1. Agreement with hand-checked labels, per split (and per kind with `--by-kind`), for sky-distill's
   verifier and for plain math-verify (`verify(parse(gold), parse(answer))`): dev pairs (math-verify's
   suite in ../shared/fixtures, and `tests/verify/data/equivalence_dev.jsonl`), held-out pairs
   (`equivalence_held_out.jsonl`, v1, examined in round 2; `equivalence_held_out_v2.jsonl`, v2, examined in
   round 4; `equivalence_held_out_v3.jsonl`, v3, examined in round 5; `equivalence_held_out_v4.jsonl`, v4), dev responses
   (`model_outputs_dev.jsonl`, gold joined from ../shared/benchmarks) and held-out responses
   (`responses_held_out.jsonl`, v1; `responses_held_out_v{2,3,4}.jsonl`, v2 to v4). See that folder's README.
   Then the near-miss test: every benchmark gold with one digit or its sign changed must be rejected,
   bare and written with a unit, a qualifier or a name (`x = `) around it.
2. Throughput on the model outputs: warm CPU seconds per response in this process (compare two
   versions of the verifier with `PYTHONPATH=<checkout> python scripts/bench_verify.py
   --only-throughput`, alternating, or `--compare-with <checkout>`), and the verify stage's path (`verify_responses`, worker
   processes with hard timeouts, `--workers` of them) against sequential plain math-verify in this
   process, on the same responses; prints the ratio.
3. Sandbox executions per second: `run_python` on a trivial program, one at a time and
   `--workers` at a time, with the isolation backend in use.
4. With `--references`: every HumanEval and MBPP reference solution through the code check
   (they should all pass), and how long that takes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


DATA = ROOT / "tests" / "verify" / "data"
PAIR_SPLITS = (  # (name, file in DATA): each held-out split was examined after the round that measured it
    ("dev: other graders", "equivalence_dev"),
    ("held-out v1, examined in round 2", "equivalence_held_out"),
    ("held-out v2, examined in round 4", "equivalence_held_out_v2"),
    ("held-out v3, examined in round 5", "equivalence_held_out_v3"),
    ("held-out v4", "equivalence_held_out_v4"),
)
NEAR_MISS_BENCHMARKS = ("math500", "minerva_math", "olympiadbench", "aime24", "aime25", "amc23")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plain_math_verify(response: str, gold: str) -> bool:
    from math_verify import parse, verify

    try:
        return bool(verify(parse(gold), parse(response)))
    except Exception:
        return False


def load_outputs(repeat: int) -> tuple[list[dict], dict[str, str]]:
    rows = read_jsonl(SHARED / "fixtures" / "model_outputs_dev.jsonl")
    golds = {}
    for benchmark in sorted({row["benchmark"] for row in rows}):
        for gold in read_jsonl(SHARED / "benchmarks" / f"{benchmark}.jsonl"):
            golds[gold["id"]] = str(gold["answer"])
    return rows * repeat, golds


def labelled_sets(rows: list[dict], golds: dict[str, str]) -> dict[str, list[tuple[str, str, str, bool, str]]]:
    """Every labelled set as (kind, prediction or response, gold, label, check) rows, by name."""
    from sky_distill.verify.labelled import HELD_OUT_TEXTS, read_inline_responses, read_pairs, read_responses

    shared_pairs = read_jsonl(SHARED / "fixtures" / "answer_equivalence_dev.jsonl")
    responses = read_responses(
        DATA / "responses_held_out.jsonl", SHARED / "fixtures" / "sky_t1_traces_sample.jsonl", SHARED / "benchmarks"
    )
    sets = {
        "pairs dev: math-verify suite (shared fixture)": [
            (r["category"], r["pred"], r["gold"], r["equal"], "pair") for r in shared_pairs
        ],
        **{
            f"pairs {name} ({file})": [
                (r["kind"], r["pred"], r["gold"], r["label"], "pair") for r in read_pairs(DATA / f"{file}.jsonl")
            ]
            for name, file in PAIR_SPLITS
        },
        "responses dev (model_outputs_dev)": [
            (r["benchmark"], r["response"], golds[r["problem_id"]], r["label"], "response") for r in rows
        ],
        "responses held-out v1, examined in round 2 (responses_held_out)": [
            (r.kind, r.response, r.gold, r.label, "response") for r in responses
        ],
    }
    for split, texts in HELD_OUT_TEXTS.items():  # written by scripts/heldout_texts.py; model outputs are not in git
        if not (ROOT / texts).exists():
            print(f"held-out {split} responses left out: {texts} is not present (scripts/heldout_texts.py)")
            continue
        examined = {"v2": ", examined in round 4", "v3": ", examined in round 5"}.get(split, "")
        sets[f"responses held-out {split}{examined} (responses_held_out_{split})"] = [
            (r.kind, r.response, r.gold, r.label, "response")
            for r in read_inline_responses(ROOT / texts, SHARED / "benchmarks")
        ]
    return sets


def agreement(rows: list[dict], golds: dict[str, str], by_kind: bool) -> dict[str, str]:
    """Agreement of sky-distill and of plain math-verify with the labels, per set (and per kind)."""
    from sky_distill.verify.math import equivalent, is_correct

    def share(count: int, total: int) -> str:
        return f"{count}/{total} = {100 * count / total:.1f}%"

    report = {}
    for name, cases in labelled_sets(rows, golds).items():
        ours, plain = {}, {}
        for kind, text, gold, label, check in cases:
            verdict = equivalent(text, gold) if check == "pair" else is_correct(text, gold)
            ours.setdefault(kind, []).append(verdict == label)
            plain.setdefault(kind, []).append(plain_math_verify(text, gold) == label)
        total = sum(len(v) for v in ours.values())
        report[name] = (
            f"sky-distill {share(sum(map(sum, ours.values())), total)}   "
            f"plain math-verify {share(sum(map(sum, plain.values())), total)}"
        )
        if by_kind:
            for kind in sorted(ours):
                report[f"{name.split(' (')[0]} / {kind}"] = (
                    f"sky-distill {sum(ours[kind])}/{len(ours[kind])}   plain {sum(plain[kind])}/{len(plain[kind])}"
                )
    return report


def near_miss(limit: int | None, examples: int = 5) -> dict[str, object]:
    """False positives on wrong answers one digit or sign from every benchmark gold."""
    from sky_distill.verify.labelled import dress, near_misses
    from sky_distill.verify.math import equivalent

    pairs = []
    for benchmark in NEAR_MISS_BENCHMARKS:
        for row in read_jsonl(SHARED / "benchmarks" / f"{benchmark}.jsonl"):
            pairs += [(variant, str(row["answer"])) for variant in near_misses(str(row["answer"]))]
    pairs = pairs[:limit]
    started = time.perf_counter()
    ours = [(pred, gold) for pred, gold in pairs if equivalent(pred, gold)]
    elapsed = time.perf_counter() - started
    plain = sum(plain_math_verify(pred, gold) for pred, gold in pairs)
    dressed = [(dressed, gold) for pred, gold in pairs for dressed in dress(pred)]
    dressed_ours = [(pred, gold) for pred, gold in dressed if equivalent(pred, gold)]
    return {
        "near misses (one digit or sign from a gold)": len(pairs),
        "accepted by sky-distill (false positives)": len(ours),
        "accepted by plain math-verify": plain,
        "sky-distill pairs/s": round(len(pairs) / elapsed, 1),
        "examples accepted": ours[:examples],
        "near misses with a unit, a qualifier or a name (`x = `)": len(dressed),
        "of those accepted by sky-distill (false positives)": len(dressed_ours),
        "examples of those accepted": dressed_ours[:examples],
    }


def cpu_per_response(rows: list[dict], golds: dict[str, str]) -> float:
    """CPU seconds per `is_correct` call once warm, sequential in this process: steady on a busy machine,
    where wall-clock rates swing with other load (compare two versions of the verifier with it)."""
    from sky_distill.verify.math import _parse_forms, is_correct

    for row in rows:  # first pass: imports and sympy's lazily built tables, paid once per worker
        is_correct(row["response"], golds[row["problem_id"]])
    _parse_forms.cache_clear()
    started = time.process_time()
    for row in rows:
        is_correct(row["response"], golds[row["problem_id"]])
    return round((time.process_time() - started) / len(rows), 5)


_CPU_PER_RESPONSE = """
import json, sys, time
from sky_distill.verify import math as m
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
golds = json.loads(sys.argv[2])
for row in rows:
    m.is_correct(row["response"], golds[row["problem_id"]])
m._parse_forms.cache_clear()
started = time.process_time()
for row in rows:
    m.is_correct(row["response"], golds[row["problem_id"]])
print((time.process_time() - started) / len(rows))
"""


def compare_versions(other: Path, rounds: int) -> dict[str, object]:
    """CPU seconds per `is_correct` on the model outputs for this checkout and `other`, each in a fresh
    process, alternating so that load on a shared machine falls on both; the ratio of the medians.
    Only `sky_distill.verify.math` is imported, so any version of it can be compared."""
    import statistics
    import subprocess
    import sys

    _, golds = load_outputs(1)
    outputs = SHARED / "fixtures" / "model_outputs_dev.jsonl"
    seconds: dict[str, list[float]] = {"this checkout": [], str(other): []}
    for _ in range(rounds):
        for name, root in (("this checkout", ROOT), (str(other), other.resolve())):
            result = subprocess.run(
                [sys.executable, "-c", _CPU_PER_RESPONSE, str(outputs), json.dumps(golds)],
                capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(root)},
            )  # fmt: skip
            seconds[name].append(float(result.stdout.strip().splitlines()[-1]))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        **{f"CPU s per response, median of {rounds}: {name}": round(value, 5) for name, value in medians.items()},
        "ratio (this checkout / other)": round(medians["this checkout"] / medians[str(other)], 3),
        "load average at the end": os.getloadavg()[0],
    }


def throughput(rows: list[dict], golds: dict[str, str], workers: int) -> dict[str, float]:
    from sky_distill.records import Problem
    from sky_distill.verify.batch import verify_responses

    problems = {pid: Problem(id=pid, problem="-", answer=gold, source="dev") for pid, gold in golds.items()}
    items = [(row["problem_id"], index, row["response"]) for index, row in enumerate(rows)]
    started = time.perf_counter()
    for row in rows:
        plain_math_verify(row["response"], golds[row["problem_id"]])
    plain_s = time.perf_counter() - started
    started = time.perf_counter()
    verify_responses(items, problems, timeout_s=10, workers=workers)  # includes starting the workers
    ours_s = time.perf_counter() - started
    return {
        "responses": len(rows),
        "sky-distill in this process, CPU s per response": cpu_per_response(rows, golds),
        "plain math-verify, sequential (responses/s)": round(len(rows) / plain_s, 1),
        f"sky-distill verify, {workers} workers (responses/s)": round(len(rows) / ours_s, 1),
        "ratio (sky-distill / plain)": round(plain_s / ours_s, 2),
    }


def sandbox_rate(runs: int, workers: int, backend: str = "auto") -> dict[str, object]:
    from sky_distill.verify.sandbox import isolation_layers, run_python

    layers = isolation_layers(backend)
    run_python("pass", backend=backend)  # resolve the backend once
    started = time.perf_counter()
    results = [run_python("print(sum(range(1000)))", backend=backend) for _ in range(runs)]
    sequential = runs / (time.perf_counter() - started)
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results += list(pool.map(lambda _: run_python("print(sum(range(1000)))", backend=backend), range(runs)))
    parallel = runs / (time.perf_counter() - started)
    assert all(result.stdout == "499500\n" for result in results)
    return {
        "backend": layers["backend"],
        "active layers": sum(layer["active"] for layer in layers["layers"].values()),
        "of layers": len(layers["layers"]),
        "executions/s, one at a time": round(sequential, 1),
        f"executions/s, {workers} at a time": round(parallel, 1),
    }


def references(workers: int) -> dict[str, object]:
    from sky_distill.verify.checks import check_response
    from sky_distill.verify.pool import map_with_timeout

    items = []
    for row in read_jsonl(SHARED / "benchmarks" / "humaneval.jsonl"):
        tests = {"type": "functional", "code": row["test"], "entry_point": row["entry_point"]}
        items.append(("code", f"```python\n{row['prompt']}{row['answer']}\n```", "", tests, 30.0))
    for row in read_jsonl(SHARED / "benchmarks" / "mbpp_test.jsonl"):
        code = "\n".join([str(row.get("test_setup_code") or ""), *row["test_list"]]).strip() + "\n"
        items.append(("code", f"```python\n{row['answer']}\n```", "", {"type": "functional", "code": code}, 30.0))
    started = time.perf_counter()
    results = list(map_with_timeout(check_response, items, 40, workers))
    elapsed = time.perf_counter() - started
    passed = sum(isinstance(result, dict) and result["status"] == "correct" for result in results)
    return {"reference solutions passing": f"{passed}/{len(items)}", "problems/s": round(len(items) / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sandbox-runs", type=int, default=40)
    parser.add_argument("--sandbox-backend", default="auto", help="auto, bwrap, landlock, ... (sandbox.BACKENDS)")
    parser.add_argument("--sandbox-only", action="store_true", help="only the sandbox section")
    parser.add_argument("--repeat", type=int, default=1, help="verify the model outputs this many times over")
    parser.add_argument(
        "--references", action="store_true", help="also run every HumanEval and MBPP reference solution"
    )
    parser.add_argument("--by-kind", action="store_true", help="agreement per kind (pairs) or per benchmark/edit")
    parser.add_argument("--near-miss-limit", type=int, default=None, help="check only the first N near misses")
    parser.add_argument("--only-throughput", action="store_true", help="only the verify-stage throughput")
    parser.add_argument(
        "--compare-with",
        type=Path,
        help="a checkout of another version: CPU s per response of each, alternating `--rounds` times, and the ratio",
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    if args.compare_with:
        print(compare_versions(args.compare_with, args.rounds))
        return
    sections = {}
    if not args.sandbox_only:
        rows, golds = load_outputs(1)
        if args.only_throughput:
            print(throughput(load_outputs(args.repeat)[0], golds, args.workers))
            return
        sections["agreement with hand-checked labels"] = agreement(rows, golds, args.by_kind)
        sections["near-miss test"] = near_miss(args.near_miss_limit)
        sections["throughput on model_outputs_dev"] = throughput(load_outputs(args.repeat)[0], golds, args.workers)
    sections["sandbox"] = sandbox_rate(args.sandbox_runs, args.workers, args.sandbox_backend)
    if args.references:
        sections["HumanEval and MBPP reference solutions"] = references(args.workers)
    for title, values in sections.items():
        print(f"\n{title}")
        for key, value in values.items():
            print(f"  {key:<52} {value}")


if __name__ == "__main__":
    main()
