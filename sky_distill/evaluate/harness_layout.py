"""Eval results in the layouts lm-evaluation-harness and lighteval users read.

From `<run_dir>/eval/<model>/<benchmark>/{summary.json,samples.jsonl}`, for each model:
    results_<model>.json           lm-evaluation-harness: results.<task>."<metric>,none" (+ _stderr),
                                   configs, versions, n-samples, config.model
    samples_<benchmark>.jsonl      lm-evaluation-harness `--log_samples`: one line per problem (doc_id,
                                   doc, target, resps, filtered_resps, exact_match)
    lighteval_results_<model>.json lighteval: config_general, results."custom|<task>|0".<metric>(+_stderr)
Metric names: exact_match is avg@n (mean correctness over the n samples); pass@k and maj@k as computed. Pure
apart from `write_harness_layout`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sky_distill.records import EvalSample, read_jsonl_strict
from sky_distill.runs import read_json, write_json_atomic

FILTER = "none"  # lm-evaluation-harness's filter name for unfiltered metrics


def task_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """metric -> value (and metric_stderr) from a summary's `eval/<benchmark>/...` keys."""
    prefix = f"eval/{summary['benchmark']}/"
    metrics: dict[str, float] = {}
    for key, value in summary.items():
        if not key.startswith(prefix) or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        name = key[len(prefix) :].replace("avg@n", "exact_match")
        if "/" in name or name.endswith(("_ci_low", "_ci_high")):
            continue
        metrics[name] = float(value)
    return metrics


def harness_results(model: str, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The aggregated JSON in lm-evaluation-harness's shape."""
    results, configs, versions, samples = {}, {}, {}, {}
    for summary in summaries:
        task = summary["benchmark"]
        entry: dict[str, Any] = {"alias": task}
        for name, value in task_metrics(summary).items():
            base, stderr = (name[: -len("_stderr")], True) if name.endswith("_stderr") else (name, False)
            entry[f"{base}{'_stderr' if stderr else ''},{FILTER}"] = value
        prefix = f"eval/{task}/avg@n"
        entry[f"exact_match_ci,{FILTER}"] = [summary.get(f"{prefix}_ci_low"), summary.get(f"{prefix}_ci_high")]
        results[task] = entry
        configs[task] = {
            "task": task,
            "output_type": "generate_until",
            "num_fewshot": 0,
            "repeats": summary.get("n"),
            "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {
                "verifier_version": summary.get("verifier_version"),
                "data_fingerprint": summary.get("data_fingerprint"),
            },
        }
        versions[task] = summary.get("verifier_version")
        samples[task] = {"original": summary.get("problems_expected"), "effective": summary.get("problems")}
    return {
        "results": results,
        "group_subtasks": {},
        "configs": configs,
        "versions": versions,
        "n-shot": {task: 0 for task in results},
        "n-samples": samples,
        "config": {"model": "sky-distill", "model_args": f"pretrained={model}"},
        "model_name": model,
    }


def lighteval_results(model: str, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The aggregated JSON in lighteval's shape."""
    results = {}
    for summary in summaries:
        results[f"custom|{summary['benchmark']}|0"] = task_metrics(summary)
    return {"config_general": {"model_name": model}, "results": results}


def harness_samples(samples: list[EvalSample], golds: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One line per problem, its n responses together, as lm-evaluation-harness logs samples."""
    by_problem: dict[str, list[EvalSample]] = defaultdict(list)
    for sample in samples:
        by_problem[sample.problem_id].append(sample)
    lines = []
    for doc_id, (problem_id, group) in enumerate(sorted(by_problem.items())):
        group.sort(key=lambda s: s.sample_index)
        lines.append(
            {
                "doc_id": doc_id,
                "doc": {"problem_id": problem_id},
                "target": (golds or {}).get(problem_id, ""),
                "resps": [[s.response] for s in group],
                "filtered_resps": [s.extracted for s in group],
                "exact_match": sum(s.correct for s in group) / len(group),
                "statuses": [s.status for s in group],
            }
        )
    return lines


def write_harness_layout(eval_dir: str | Path, out_dir: str | Path, models: Iterable[str] | None = None) -> list[Path]:
    """Write each model's results (and samples) under `out_dir/<model>/`: every model with complete
    results in `eval_dir`, or only `models`; return the files written."""
    eval_dir, out_dir = Path(eval_dir), Path(out_dir)
    wanted = None if models is None else set(models)
    by_model: dict[str, list[tuple[dict[str, Any], Path]]] = defaultdict(list)
    for complete in sorted(eval_dir.glob("*/*/COMPLETE.json")):
        summary = read_json(complete.parent / "summary.json")
        if wanted is None or summary["model"] in wanted:
            by_model[summary["model"]].append((summary, complete.parent))
    written = []
    for model, entries in by_model.items():
        target = out_dir / model
        summaries = [summary for summary, _ in entries]
        for name, data in (
            (f"results_{model}.json", harness_results(model, summaries)),
            (f"lighteval_results_{model}.json", lighteval_results(model, summaries)),
        ):
            write_json_atomic(target / name, data)
            written.append(target / name)
        for summary, directory in entries:
            path = target / f"samples_{summary['benchmark']}.jsonl"
            lines = harness_samples(read_jsonl_strict(directory / "samples.jsonl", EvalSample))
            path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
            written.append(path)
    return written
