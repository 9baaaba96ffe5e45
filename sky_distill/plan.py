"""`sky-distill plan`: what a recipe will do (or did), without running it.

Problems per source, generation shards and the teacher's GPU layout, traces kept, and the
training schedule: examples, rows and tokens per step, steps per epoch, epochs, steps,
checkpoints. Counts are measured where the run directory already has them (the problems each
shard generated for, the verified SFT file, the trained student's summary and metrics) and
otherwise computed from the config: problems from local source copies (task.local_dir), traces
from `task.expected_traces` (the published recipe's count). Written to `<run_dir>/plan.json`
when the run directory exists.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from sky_distill.config import stage_config
from sky_distill.runs import completion, write_json_atomic
from sky_distill.train.batching import steps_per_epoch, total_steps


def count_by_source(path: Path) -> Counter[str] | None:
    if not path.exists():
        return None
    return Counter(json.loads(line).get("source", "") for line in path.read_text().splitlines() if line.strip())


def source_plan(task: Any, run_dir: Path) -> list[dict[str, Any]]:
    """Each source with its selection, and its problems: generated (measured) or readable locally."""
    generated = count_by_source(run_dir / "generate" / "problems.jsonl")
    readable: Counter[str] | None = None
    if generated is None and (task.kind in ("arithmetic", "jsonl") or task.local_dir):
        from sky_distill.tasks.loader import load_task_problems

        problems, _ = load_task_problems(task, "train")
        readable = Counter(problem.source for problem in problems)
    counts = generated if generated is not None else readable
    if task.kind != "mixture":
        total = sum(counts.values()) if counts is not None else None
        return [{"source": task.name, "dataset": task.dataset or task.kind, "problems": total}]
    rows = []
    for name, source in task.sources.items():
        if source is None:
            continue
        selection = {key: value for key, value in (("where", source.where), ("head", source.head)) if value}
        if source.count:
            selection["count"] = source.count
        rows.append(
            {
                "source": name,
                "dataset": source.dataset + (f"/{source.subset}" if source.subset else "") + f"[{source.split}]",
                "selection": selection,
                "problems": counts.get(name, 0) if counts is not None else None,
            }
        )
    return rows


def measured_training(run_dir: Path, student: str) -> dict[str, Any] | None:
    """What the trained student's summary and metrics say (None before training)."""
    out = run_dir / "train" / student
    summary = completion(out)
    if summary is None:
        return None
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    tokens = [row["train/tokens"] for row in rows if "train/tokens" in row]
    logged_every = summary.get("provenance", {}).get("config", {}).get("train", {}).get("log_every", 1)
    return {
        "steps": summary["steps"],
        "rows_per_step": summary["global_batch_size"],
        "world_size": summary["world_size"],
        "tokens_per_step": round(sum(tokens) / len(tokens) / logged_every) if tokens else None,
        "kept_examples": summary.get("train/data/kept"),
    }


def recipe_plan(typed: dict[str, Any], run_dir: Path, student: str = "sft_verified") -> dict[str, Any]:
    task, generate, train, teacher = typed["task"], typed["generate"], typed["train"], typed["teacher"]
    sources = source_plan(task, run_dir)
    kept = count_by_source(run_dir / "verify" / "sft" / "verified.jsonl")
    for row in sources:
        row["traces_kept"] = kept.get(row["source"], 0) if kept is not None else None
    traces = sum(kept.values()) if kept is not None else task.expected_traces
    engine = teacher.engine
    layout = (
        {"served": teacher.serve.model_dump(include={"nodes", "tensor_parallel_size", "pipeline_parallel_size"})}
        if teacher.serve
        else {"base_url": engine.base_url}
        if engine.backend == "openai"
        else {"tensor_parallel_size": engine.tensor_parallel_size, "data_parallel_size": engine.data_parallel_size}
    )
    plan: dict[str, Any] = {
        "sources": sources,
        "problems": sum(row["problems"] for row in sources)
        if all(r["problems"] is not None for r in sources)
        else None,
        "generate": {
            "shards": generate.shard_count,
            "samples_per_problem": generate.sampling.n,
            "max_tokens": generate.sampling.max_tokens,
            "logprobs": generate.sampling.logprobs,
            "teacher": teacher.path,
            "backend": engine.backend,
            **layout,
        },
        "traces_kept": traces,
        "traces_measured": kept is not None,
    }
    training: dict[str, Any] = {
        "student": train.init,
        "batch_unit": train.batch_unit,
        "global_batch_size": train.global_batch_size,
        "examples_per_step": train.global_batch_size if train.batch_unit == "examples" else None,
        "max_seq_len": train.max_seq_len,
        "max_tokens_per_step": (train.global_batch_size * train.max_seq_len) if train.batch_unit == "rows" else None,
        "learning_rate": train.learning_rate,
        "epochs": train.epochs,
        "max_steps": train.max_steps,
        "num_procs": train.num_procs * train.num_nodes,
    }
    if traces and train.batch_unit == "examples":
        steps = total_steps(traces, train.global_batch_size, train.epochs, train.max_steps)
        training.update(steps_per_epoch=steps_per_epoch(traces, train.global_batch_size), optimizer_steps=steps)
        training["warmup_steps"] = math.ceil(train.warmup_ratio * steps)
        saves = [step for step in range(train.save_every, steps, train.save_every)] if train.save_every else []
        training["checkpoints"] = len(saves)
        training["checkpoint_steps"] = saves
    measured = measured_training(run_dir, student)
    if measured:
        training["measured"] = measured
    plan["train"] = training
    return plan


def format_plan(plan: dict[str, Any], name: str) -> str:
    """The plan as a few aligned lines for the terminal (and the README)."""
    lines = [
        f"plan of {name}",
        "  source                    dataset                                    problems  kept  selection",
    ]
    for row in plan["sources"]:
        problems = "?" if row["problems"] is None else row["problems"]
        kept = "-" if row["traces_kept"] is None else row["traces_kept"]
        selection = ", ".join(f"{key} {value}" for key, value in row.get("selection", {}).items()) or "all rows"
        lines.append(f"  {row['source']:<25} {row['dataset']:<42} {problems:>8}  {kept:>4}  {selection}")
    gen, train = plan["generate"], plan["train"]
    layout = (
        f"served: {gen['served']['nodes']} nodes, TP {gen['served']['tensor_parallel_size']} x PP "
        f"{gen['served']['pipeline_parallel_size']}"
        if "served" in gen
        else f"at {gen['base_url']}"
        if "base_url" in gen
        else f"TP {gen['tensor_parallel_size']} x DP {gen['data_parallel_size']}"
    )
    lines.append(
        f"  generate: {gen['shards']} shards, n={gen['samples_per_problem']}, max_tokens {gen['max_tokens']}, "
        f"logprobs {gen['logprobs']}, {gen['teacher']} ({gen['backend']}, {layout})"
    )
    source = "measured" if plan["traces_measured"] else "expected (task.expected_traces)"
    lines.append(f"  traces kept: {plan['traces_kept']} {source}")
    per_step = (
        f"{train['examples_per_step']} examples a step"
        if train["batch_unit"] == "examples"
        else f"{train['global_batch_size']} rows a step (<= {train['max_tokens_per_step']} tokens)"
    )
    lines.append(
        f"  train: {train['student']}, {per_step}, cut at {train['max_seq_len']} tokens, lr {train['learning_rate']}, "
        f"{train['epochs']} epochs"
        + (
            f" = {train['steps_per_epoch']} steps/epoch, {train['optimizer_steps']} steps"
            if "optimizer_steps" in train
            else ""
        )
        + (f", {train['checkpoints']} checkpoints + the export" if "checkpoints" in train else "")
    )
    if "measured" in train:
        m = train["measured"]
        lines.append(
            f"  trained: {m['steps']} steps on {m['world_size']} ranks, {m['rows_per_step']} packed rows "
            f"and {m['tokens_per_step']} tokens a step"
        )
    return "\n".join(lines)


def run(cfg: Any) -> dict[str, Any]:
    typed = stage_config(cfg, "plan")
    run_dir = Path(typed["paths"].run_dir)
    students = [s["name"] for s in cfg.pipeline.students] or ["sft_verified"]
    plan = recipe_plan(typed, run_dir, students[0])
    if run_dir.exists():
        write_json_atomic(run_dir / "plan.json", plan)
    return {"table": format_plan(plan, str(cfg.run_name)), "plan": plan}
