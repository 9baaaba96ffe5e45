"""Paired comparison of two models on the same problems: the difference with an interval and tests.

Per benchmark, each problem's score is its fraction of correct samples. The difference A - B
is averaged over the problems both models answered, with a standard error, a paired-bootstrap
interval and p-value, and an exact McNemar test on each problem's first sample.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sky_distill.errors import MissingInputError, SkyDistillError
from sky_distill.evaluate.metrics import mcnemar_exact_p, paired_difference
from sky_distill.evaluate.scoring import group_by_problem
from sky_distill.records import EvalSample, read_jsonl_strict
from sky_distill.runs import completion


def compare_samples(
    a: list[EvalSample], b: list[EvalSample], resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """The paired comparison of two sample sets of one benchmark; problems are matched by id."""
    by_a, by_b = group_by_problem(a), group_by_problem(b)
    common = sorted(set(by_a) & set(by_b))
    if not common:
        raise SkyDistillError("the two runs share no problem ids; they cannot be paired")
    score_a = [sum(s.correct for s in by_a[pid]) / len(by_a[pid]) for pid in common]
    score_b = [sum(s.correct for s in by_b[pid]) / len(by_b[pid]) for pid in common]
    first_a = [by_a[pid][0].correct for pid in common]
    first_b = [by_b[pid][0].correct for pid in common]
    a_only = sum(x and not y for x, y in zip(first_a, first_b))
    b_only = sum(y and not x for x, y in zip(first_a, first_b))
    return {
        "problems": len(common),
        "only_in_a": len(set(by_a) - set(by_b)),
        "only_in_b": len(set(by_b) - set(by_a)),
        "a": sum(score_a) / len(common),
        "b": sum(score_b) / len(common),
        **paired_difference(score_a, score_b, resamples, confidence, seed),
        "confidence": confidence,
        "mcnemar_a_only": a_only,
        "mcnemar_b_only": b_only,
        "p_mcnemar": mcnemar_exact_p(a_only, b_only),
    }


def compare_models(
    eval_dir: Path, model_a: str, model_b: str, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Per benchmark both models completed: the paired comparison, warning when the data differ."""
    results: dict[str, dict[str, Any]] = {}
    for model in (model_a, model_b):
        if not (eval_dir / model).is_dir():
            raise MissingInputError(f"no eval results for {model!r} in {eval_dir}")
    benchmarks = sorted(
        path.name
        for path in (eval_dir / model_a).iterdir()
        if completion(path) is not None and completion(eval_dir / model_b / path.name) is not None
    )
    if not benchmarks:
        raise MissingInputError(f"{model_a!r} and {model_b!r} have no complete benchmark in common in {eval_dir}")
    for benchmark in benchmarks:
        summary_a = completion(eval_dir / model_a / benchmark) or {}
        summary_b = completion(eval_dir / model_b / benchmark) or {}
        a = read_jsonl_strict(eval_dir / model_a / benchmark / "samples.jsonl", EvalSample)
        b = read_jsonl_strict(eval_dir / model_b / benchmark / "samples.jsonl", EvalSample)
        result = compare_samples(a, b, resamples, confidence, seed)
        result["same_data"] = summary_a.get("data_fingerprint") == summary_b.get("data_fingerprint")
        results[benchmark] = result
    return results


def comparison_markdown(model_a: str, model_b: str, results: dict[str, dict[str, Any]]) -> str:
    confidence = next(iter(results.values()))["confidence"] if results else 0.95
    lines = [
        f"Paired comparison: A = {model_a}, B = {model_b} (per-problem avg@n; {confidence:.0%} paired-bootstrap interval)",
        "",
        "| benchmark | problems | A (%) | B (%) | A − B (%) | interval | p (bootstrap) | p (McNemar, sample 0) | same data |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for benchmark, r in results.items():
        lines.append(
            f"| {benchmark} | {r['problems']} | {100 * r['a']:.1f} | {100 * r['b']:.1f} | "
            f"{100 * r['difference']:+.1f} ± {100 * r['stderr']:.1f} | [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}] | "
            f"{r['p_bootstrap']:.3g} | {r['p_mcnemar']:.3g} | {'yes' if r['same_data'] else 'NO'} |"
        )
    return "\n".join(lines)
