"""Peak resident memory of the data stages at 1x, 10x and 100x the demo's data, before and after.

    python scripts/bench_data_memory.py [--scales 1 10 100] [--before REF] [--workdir DIR]

Synthesises, per scale s, what `make demo ARGS=experiment=demo_kd` leaves after generation:
512*s arithmetic problems x 4 traces in two generation shards (responses of 60-160 byte
tokens: the demo's 222,845 sampled tokens over 2,048 traces, ~109 per trace; `token_ids`
recorded on each line) and each shard's top-16 store (`shard.topk/chunk-*.npz`, 64 samples a
chunk, like generation's flushes; written uncompressed, as zlib on random rows would dominate
the run: the readers load them through the same `np.load`), about one trace in three wrong. Then it runs, each in its own
process, with the code of `--before` (a git ref, extracted with `git archive`; default: the
merge base with main) and of this checkout:

    merge    `generate.merge.merge_shards`: the shards -> `traces.jsonl`
    verify   `sky-distill verify` (math-verify on every trace, 2 workers, a 60 s timeout so that a
             loaded machine does not turn checks into timeouts; curation; SFT export)
    kd       the offline KD reader: the stored rows of `verify/sft/verified.jsonl`'s samples,
             aligned to their tokens, and rank 0 of 8 collating its share in micro batches of 16

(`verify*`: at the scales of `--fast-check-scales`, default 100, the workers compare the boxed
answer as a string instead of calling math-verify, which would take ~12 minutes per run here;
the stage's own process, whose memory is measured, runs the same code either way)
and prints each process's peak resident set (VmHWM: the stage's own process, not its verifier
workers) and wall time side by side, and whether both codes wrote identical outputs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from unittest.mock import patch

REPO = Path(__file__).resolve().parents[1]
PROBLEMS_PER_SCALE = 512
SAMPLES = 4
SHARDS = 2
TOPK = 16
CHUNK_SAMPLES = 64
STAGES = ("merge", "verify", "kd")


# --- synthetic data --------------------------------------------------------------------------


def response_text(a: int, b: int, rng: random.Random) -> str:
    """A worked column addition (a carry dropped in about half), padded to 60-160 bytes."""
    from sky_distill.tasks.arithmetic import worked_solution

    columns = max(len(str(a)), len(str(b)))
    dropped = frozenset(c for c in range(columns) if rng.random() < 0.3)
    text = worked_solution(a, b, dropped)
    target = rng.randint(60, 160)
    filler = "Check each column again. "
    head, tail = text.split("</think>", 1)
    while len(head) + len(tail) + 8 < target:
        head += filler[: target - len(head) - len(tail) - 8]
    return f"{head}</think>{tail}"


def synthesise(scale: int, data_dir: Path) -> dict:
    """The generate stage's shard files, problem files and top-k stores at `scale` x the demo."""
    import numpy as np

    from sky_distill.generate.merge import shard_summary_path
    from sky_distill.generate.shards import shard_name
    from sky_distill.generate.topk_store import TopKWriter, chunk_dir
    from sky_distill.models.tokenizer import build_byte_tokenizer
    from sky_distill.records import Problem, write_jsonl
    from sky_distill.tasks.arithmetic import ArithmeticSpec, make_problems

    marker = data_dir / "SYNTHESISED.json"
    if marker.exists():
        return json.loads(marker.read_text())
    shutil.rmtree(data_dir, ignore_errors=True)
    (data_dir / "shards").mkdir(parents=True)
    (data_dir / "problems").mkdir(parents=True)
    tokenizer = build_byte_tokenizer()
    problems = make_problems(
        ArithmeticSpec(min_digits=2, max_digits=3, seed=scale), "train", PROBLEMS_PER_SCALE * scale
    )
    rng = random.Random(scale)
    generator = np.random.default_rng(scale)
    tokens = 0
    per_shard = -(-len(problems) // SHARDS)
    for shard in range(SHARDS):
        name = shard_name(shard, SHARDS)
        mine = problems[shard * per_shard : (shard + 1) * per_shard]
        write_jsonl(data_dir / "problems" / f"{name}.jsonl", mine)
        writer = TopKWriter(chunk_dir(data_dir / "shards" / f"{name}.jsonl"))
        with open(data_dir / "shards" / f"{name}.jsonl", "w", encoding="utf-8") as lines:
            pending: list[tuple[Problem, int, str]] = []
            for problem in reversed(mine):  # not in key order: merge sorts
                a, b = problem.metadata["a"], problem.metadata["b"]
                pending += [(problem, index, response_text(a, b, rng)) for index in range(SAMPLES)]
                if len(pending) >= CHUNK_SAMPLES:
                    tokens += write_samples(lines, writer, pending, tokenizer, generator)
                    pending = []
            if pending:
                tokens += write_samples(lines, writer, pending, tokenizer, generator)
        summary = {
            "shard": name,
            "complete": True,
            "n": SAMPLES,
            "done_samples": len(mine) * SAMPLES,
            "expected_samples": len(mine) * SAMPLES,
            "settings_fingerprint": "synthetic",
            "problem_fingerprint": f"synthetic-{scale}-{shard}",
            "gen/prompt_errors": 0,
            "gen/problem_errors": 0,
            "engine": {"model": "teacher", "version": "synthetic"},
        }
        shard_summary_path(data_dir / "shards", name).write_text(json.dumps(summary))
    facts = {"scale": scale, "problems": len(problems), "traces": len(problems) * SAMPLES, "tokens": tokens}
    marker.write_text(json.dumps(facts))
    return facts


def write_samples(lines, writer, samples: list, tokenizer, generator) -> int:
    """Trace lines and one top-16 chunk (the sampled id first, 15 other ids, log-probs sorted
    descending) for these samples; returns their tokens."""
    import numpy as np

    from sky_distill.generate.topk_store import TopK

    encoded = tokenizer([response for _, _, response in samples], add_special_tokens=False)["input_ids"]
    total = sum(len(ids) for ids in encoded)
    others = generator.integers(0, len(tokenizer), size=(total, TOPK - 1), dtype=np.int32)
    values = np.sort(generator.uniform(-12.0, 0.0, size=(total, TOPK)).astype(np.float16), axis=1)[:, ::-1]
    start = 0
    for (problem, index, response), ids in zip(samples, encoded):
        line = {
            "problem_id": problem.id,
            "sample_index": index,
            "source": problem.source,
            "messages": [{"role": "user", "content": problem.problem}],
            "response": response,
            "model": "teacher",
            "engine": "vllm",
            "engine_version": "synthetic",
            "sampling": {"temperature": 1.0, "max_tokens": 256, "logprobs": TOPK},
            "seed": index,
            "prompt_tokens": len(problem.problem),
            "completion_tokens": len(ids),
            "finish_reason": "stop",
            "truncated": False,
            "elapsed_s": 0.01,
            "token_ids": ids,
            "thought_format": "think",
        }
        lines.write(json.dumps(line) + "\n")
        sampled = np.asarray(ids, dtype=np.int32)
        rows = slice(start, start + len(ids))
        writer.add(
            (problem.id, index), TopK(np.concatenate([sampled[:, None], others[rows]], axis=1), values[rows], sampled)
        )
        start += len(ids)
    with patch.object(np, "savez_compressed", np.savez):  # zlib on random rows would dominate the run
        writer.flush()
    return total


# --- the stages, one per process -----------------------------------------------------------------


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(stage: str, root: Path) -> dict:
    run_dir = root / "runs" / "demo"
    started = time.monotonic()
    if stage == "merge":
        from sky_distill.generate.merge import merge_shards

        summary = merge_shards(run_dir / "generate", SHARDS, {})
        facts = {"traces": summary["gen/samples"]}
    elif stage == "verify":
        from hydra import compose, initialize_config_dir
        from hydra.core.hydra_config import HydraConfig

        import sky_distill.verify.batch as batch
        import sky_distill.verify.stage as stage

        if os.environ.get("BENCH_FAST_CHECK"):
            batch.check_response = exact_match_check  # the workers' check only: the stage is the same
        run = stage.run
        code_root = Path(__import__("sky_distill").__file__).resolve().parents[1]
        with initialize_config_dir(config_dir=str(code_root / "conf"), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[f"paths.root={root}", "verify.timeout_s=60", "stage=verify"],
                return_hydra_config=True,
            )
            HydraConfig.instance().set_config(cfg)
        report = run(cfg)
        facts = {"kept": report["verify/kept"], "acceptance": report["verify/acceptance_rate"]}
    elif stage == "kd":
        facts = read_kd_rows(root, run_dir)
    else:
        raise ValueError(stage)
    return {"peak_rss_mib": round(peak_rss_mib(), 1), "seconds": round(time.monotonic() - started, 1), **facts}


def exact_match_check(answer_type: str, response: str, gold: str, tests=None, timeout_s=None) -> dict:
    """The fast path for large scales: the boxed answer compared as a string (exact for integer
    sums), not math-verify; what the stage's own process holds does not depend on it."""
    from sky_distill.verify.math import extract_answer

    extracted = extract_answer(response)
    correct = extracted is not None and extracted.strip() == gold.strip()
    status = "unparsed" if extracted is None else ("correct" if correct else "incorrect")
    return {"status": status, "correct": correct, "extracted": extracted, "detail": None, "elapsed_s": 0.0}


def read_kd_rows(root: Path, run_dir: Path, world: int = 8, micro: int = 16) -> dict:
    """What training's data side does with the stored rows: look up and align every SFT example's
    rows (every rank does), then collate rank 0's share (what it trains on), micro batch by micro batch."""
    from sky_distill.generate.topk_store import store_directories
    from sky_distill.models.tokenizer import build_byte_tokenizer
    from sky_distill.records import SFTExample, iter_jsonl
    from sky_distill.train.data import collate_teacher
    from sky_distill.train.teacher_signal import align_rows
    from sky_distill.train.templates import end_of_turn_ids

    tokenizer = build_byte_tokenizer()
    stops = end_of_turn_ids(tokenizer)
    files = [run_dir / "verify" / "sft" / "verified.jsonl"]
    directories = store_directories(root / "data" / "shards")
    try:
        from sky_distill.train.dataset import open_teacher_rows

        rows = open_teacher_rows(directories, files, root / "teacher_rows")
    except ImportError:  # the code before: every sample's rows, decompressed into memory
        from sky_distill.generate.topk_store import read_chunks

        rows = read_chunks(directories)
    teachers = []
    records = (example for _, example in iter_jsonl(files[0], SFTExample))
    while batch := list(itertools.islice(records, 512)):
        # The response's tokens as the student's tokenizer gives them (the byte tokenizer, a raw SFT
        # format: the teacher's sampled ids), encoded in batches: the chat template is not measured here.
        responses = tokenizer([example.messages[-1].content for example in batch], add_special_tokens=False)
        for example, response_ids in zip(batch, responses["input_ids"]):
            stored = rows[(example.problem_id, example.sample_index)]
            aligned = align_rows(response_ids, False, stored, stops)
            if isinstance(aligned, str):
                raise ValueError(f"{example.problem_id}/{example.sample_index}: {aligned}")
            teachers.append(aligned)
    mine = teachers[0::world]
    collated = 0
    for start in range(0, len(mine), micro):
        batch = [_Example(teacher) for teacher in mine[start : start + micro]]
        collated += int(collate_teacher(batch)["teacher_ids"].shape[0])
    return {"examples": len(teachers), "rank0_rows": collated}


class _Example:
    def __init__(self, teacher):
        self.teacher = teacher


# --- the comparison --------------------------------------------------------------------------------


def extract(ref: str, target: Path) -> Path:
    """The repository at `ref`, as files (git archive), for the `before` runs."""
    if (target / "sky_distill").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    import io

    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def prepare_root(data_dir: Path, root: Path) -> None:
    """A run directory whose generate stage links to the synthetic shards (each code writes its own outputs)."""
    shutil.rmtree(root, ignore_errors=True)
    generate = root / "runs" / "demo" / "generate"
    generate.mkdir(parents=True)
    (generate / "shards").symlink_to(data_dir / "shards")
    (generate / "problems").symlink_to(data_dir / "problems")
    (root / "data").symlink_to(data_dir)


def run_child(stage: str, root: Path, code: Path, fast_check: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "TQDM_DISABLE": "1", "HYDRA_FULL_ERROR": "1"}
    if fast_check:
        env["BENCH_FAST_CHECK"] = "1"
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", stage, str(root)],
        env=env,
        capture_output=True,
        text=True,
        cwd=code,
    )
    if done.returncode:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def same_outputs(first: Path, second: Path) -> bool:
    run_a, run_b = first / "runs" / "demo", second / "runs" / "demo"
    files = ["generate/traces.jsonl", "generate/problems.jsonl", "verify/sft/verified.jsonl", "verify/sft/all.jsonl"]
    if any((run_a / name).read_bytes() != (run_b / name).read_bytes() for name in files):
        return False
    with open(run_a / "verify/verdicts.jsonl") as first_file, open(run_b / "verify/verdicts.jsonl") as second_file:
        for first_line, second_line in zip(first_file, second_file, strict=True):
            first_verdict, second_verdict = json.loads(first_line), json.loads(second_line)
            first_verdict.pop("elapsed_s", None), second_verdict.pop("elapsed_s", None)
            if first_verdict != second_verdict:
                return False
    merged = [json.loads((run / "generate" / "COMPLETE.json").read_text()) for run in (run_a, run_b)]
    if {key: merged[0][key] for key in merged[0] if key.startswith("gen/")} != {
        key: merged[1][key] for key in merged[1] if key.startswith("gen/")
    }:
        return False
    volatile = {"verify/seconds", "verify/responses_per_s", "provenance", "inputs", "policy", "created"}
    reports = [json.loads((run / "verify" / "report.json").read_text()) for run in (run_a, run_b)]
    first, second = ({key: value for key, value in report.items() if key not in volatile} for report in reports)
    return first == second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument(
        "--before", default=None, help="git ref of the code to compare with (default: merge base with main)"
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_data_memory"))
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument(
        "--fast-check-scales",
        type=int,
        nargs="*",
        default=[100],
        help="scales whose verify workers compare the boxed answer as a string instead of math-verify (marked *)",
    )
    parser.add_argument("--reuse-runs", action="store_true", help="keep earlier run outputs (e.g. to rerun kd alone)")
    parser.add_argument("--after-only", action="store_true", help="skip the before runs")
    parser.add_argument("--child", nargs=2, metavar=("STAGE", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return
    sys.path.insert(0, str(REPO))
    ref = (
        args.before
        or subprocess.run(
            ["git", "-C", str(REPO), "merge-base", "HEAD", "main"], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    codes = (
        {"after": REPO}
        if args.after_only
        else {"before": extract(ref, args.workdir / f"code-{ref[:12]}"), "after": REPO}
    )
    print(f"before: {ref[:12]}  after: {REPO} (working tree)")
    header = f"{'scale':>5} {'traces':>8} {'tokens':>10} {'stage':>7}" + "".join(
        f" {name + ' MiB':>12} {name + ' s':>9}" for name in codes
    )
    print(header)
    for scale in args.scales:
        started = time.monotonic()
        facts = synthesise(scale, args.workdir / f"data-x{scale}")
        print(f"# x{scale}: synthesised in {time.monotonic() - started:.0f} s: {facts}", flush=True)
        roots = {name: args.workdir / f"run-x{scale}-{name}" for name in codes}
        for name in codes:
            if not (args.reuse_runs and roots[name].exists()):
                prepare_root(args.workdir / f"data-x{scale}", roots[name])
        for stage in args.stages:
            fast = stage == "verify" and scale in args.fast_check_scales
            results = {name: run_child(stage, roots[name], code, fast) for name, code in codes.items()}
            cells = "".join(
                f" {result.get('peak_rss_mib', 'fail'):>12} {result.get('seconds', '-'):>9}"
                for result in results.values()
            )
            label = f"{stage}*" if fast else stage
            print(f"{scale:>5} {facts['traces']:>8} {facts['tokens']:>10} {label:>7}{cells}", flush=True)
            for name, result in results.items():
                print(f"#   {name} {stage}: {result}", flush=True)
        if len(codes) == 2 and {"merge", "verify"} <= set(args.stages):
            print(f"# x{scale}: before and after wrote identical outputs: {same_outputs(*roots.values())}")


if __name__ == "__main__":
    main()
