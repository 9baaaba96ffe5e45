"""The table of an experiment over seeds: each model's mean across seeds with the between-seed
spread and a seeds x problems interval, and paired differences between named models.

Reads `<seed run>/eval/<model>/<benchmark>/samples.jsonl` of every seed run; the statistics
are `sky_distill.evaluate.seeds`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sky_distill.errors import MissingInputError
from sky_distill.evaluate.scoring import group_by_problem
from sky_distill.evaluate.seeds import replicate_weights, score_matrix, seed_stats
from sky_distill.records import EvalSample, read_jsonl_strict
from sky_distill.runs import completion


def problem_scores(benchmark_dir: Path) -> dict[str, float]:
    """Per problem id: the fraction of its samples that are correct, from a complete eval directory."""
    if completion(benchmark_dir) is None:
        raise MissingInputError(f"{benchmark_dir} is not a complete eval result; run `sky-distill eval` there first")
    samples = read_jsonl_strict(benchmark_dir / "samples.jsonl", EvalSample)
    return {pid: sum(s.correct for s in group) / len(group) for pid, group in group_by_problem(samples).items()}


def seed_tables(
    seed_runs: Sequence[Path],
    models: Sequence[str],
    benchmarks: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    resamples: int,
    confidence: float,
    seed: int,
    shared_run: Path | None = None,
) -> dict[str, Any]:
    """Per benchmark: the stats of each model and of each pair's difference (a - b), across seeds.

    A model that some seed run has not evaluated is a fixed model (the teacher, the base
    student): evaluated once in `shared_run`, its scores stand for every seed.
    """
    results: dict[str, Any] = {"seed_runs": [str(run) for run in seed_runs], "benchmarks": {}, "fixed": []}
    for benchmark in benchmarks:
        matrices = {}
        for model in models:
            if shared_run is not None and not all((run / "eval" / model / benchmark).is_dir() for run in seed_runs):
                per_seed = [problem_scores(shared_run / "eval" / model / benchmark)] * len(seed_runs)
                if model not in results["fixed"]:
                    results["fixed"].append(model)
            else:
                per_seed = [problem_scores(run / "eval" / model / benchmark) for run in seed_runs]
            matrices[model], problems = score_matrix(per_seed, f"{model} on {benchmark}")
        shapes = {matrix.shape for matrix in matrices.values()}
        if len(shapes) != 1:
            raise MissingInputError(f"{benchmark}: the models answered different problem sets ({sorted(shapes)})")
        num_seeds, num_problems = shapes.pop()
        weights = replicate_weights(num_seeds, num_problems, resamples, seed)
        runs = [*seed_runs, *([shared_run] if shared_run is not None else [])]
        done = [completion(run / "eval" / model / benchmark) for run in runs for model in models]
        results["benchmarks"][benchmark] = {
            "problems": num_problems,
            "samples": sorted({int(d["n"]) for d in done if d and d.get("n")}),  # avg@n's n across the runs
            "models": {m: seed_stats(matrices[m], weights, confidence).as_dict() for m in models},
            "differences": {
                f"{a} - {b}": seed_stats(matrices[a] - matrices[b], weights, confidence, test_zero=True).as_dict()
                for a, b in pairs
            },
        }
    results.update({"seeds": len(seed_runs), "resamples": resamples, "confidence": confidence})
    return results


def _percent(value: float, signed: bool = False) -> str:
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def _interval(stats: dict[str, Any], signed: bool = False) -> str:
    return f"[{_percent(stats['ci_low'], signed)}, {_percent(stats['ci_high'], signed)}]"


def _per_seed(stats: dict[str, Any], signed: bool = False) -> str:
    return ", ".join(_percent(value, signed) for value in stats["seed_means"])


def seed_markdown(results: dict[str, Any], labels: dict[str, str] | None = None) -> str:
    """Markdown: a model table and a paired-difference table per benchmark."""
    labels = labels or {}
    seeds = results["seeds"]
    level = round(100 * results["confidence"])
    lines: list[str] = []
    for benchmark, block in results["benchmarks"].items():
        counts = block.get("samples") or []
        metric = f"avg@{counts[0]}" if len(counts) == 1 else "avg@n"
        lines += [
            f"**{benchmark}**: {metric} (%) over {seeds} seeds x {block['problems']} problems; "
            f"interval: {level}% hierarchical bootstrap (seeds, then problems; {results['resamples']} resamples)",
            "",
            "| model | mean | between-seed SD | interval | per seed |",
            "|---|---|---|---|---|",
        ]
        for model, stats in block["models"].items():
            fixed = model in results.get("fixed", [])
            spread = "(fixed model)" if fixed else _percent(stats["seed_sd"])
            per_seed = "evaluated once" if fixed else _per_seed(stats)
            lines.append(
                f"| {labels.get(model, model)} | {_percent(stats['mean'])} | {spread} | {_interval(stats)} | {per_seed} |"
            )
        if block["differences"]:
            lines += [
                "",
                "| paired difference | mean (points) | interval | p | per seed | significant |",
                "|---|---|---|---|---|---|",
            ]
            for name, stats in block["differences"].items():
                excludes_zero = stats["ci_low"] > 0 or stats["ci_high"] < 0
                lines.append(
                    f"| {name} | {_percent(stats['mean'], True)} | {_interval(stats, True)} | "
                    f"{stats['p_value']:.3f} | {_per_seed(stats, True)} | {'yes' if excludes_zero else 'no'} |"
                )
        lines.append("")
    return "\n".join(lines).rstrip()
