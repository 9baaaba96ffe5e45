"""Comparison tables from eval summaries: models as rows, benchmarks as columns. Pure rendering."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sky_distill.runs import read_json


def collect_summaries(eval_dir: str | Path) -> list[dict[str, Any]]:
    """Every complete (model, benchmark) summary under an eval directory."""
    root = Path(eval_dir)
    return [read_json(path) for path in sorted(root.glob("*/*/COMPLETE.json"))]


def score_cells(
    summaries: Sequence[dict[str, Any]], metric: str = "avg@n"
) -> tuple[list[str], list[str], dict[tuple[str, str], tuple[float, float]]]:
    models: list[str] = []
    benchmarks: list[str] = []
    cells: dict[tuple[str, str], tuple[float, float]] = {}
    for summary in summaries:
        model, benchmark = summary["model"], summary["benchmark"]
        key = f"eval/{benchmark}/{metric}"
        if key not in summary:
            continue
        if model not in models:
            models.append(model)
        if benchmark not in benchmarks:
            benchmarks.append(benchmark)
        cells[(model, benchmark)] = (summary[key], summary.get(f"{key}_stderr", float("nan")))
    return models, benchmarks, cells


def format_score(mean: float, stderr: float) -> str:
    return f"{100 * mean:.1f} ± {100 * stderr:.1f}"


def markdown_table(
    summaries: Sequence[dict[str, Any]], metric: str = "avg@n", order: Sequence[str] | None = None
) -> str:
    """Accuracy in percent with standard error, one row per model in `order` (then the rest)."""
    models, benchmarks, cells = score_cells(summaries, metric)
    if order:
        models = [m for m in order if m in models] + [m for m in models if m not in order]
    header = f"| model | {' | '.join(f'{b} {metric} (%)' for b in benchmarks)} |"
    rule = "|" + "---|" * (len(benchmarks) + 1)
    rows = [
        f"| {model} | "
        + " | ".join(format_score(*cells[(model, b)]) if (model, b) in cells else "–" for b in benchmarks)
        + " |"
        for model in models
    ]
    return "\n".join([header, rule, *rows])


def csv_table(summaries: Sequence[dict[str, Any]], metric: str = "avg@n") -> str:
    models, benchmarks, cells = score_cells(summaries, metric)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["model", *[f"{b}/{metric}" for b in benchmarks], *[f"{b}/{metric}_stderr" for b in benchmarks]])
    for model in models:
        means = [cells.get((model, b), (float("nan"), float("nan")))[0] for b in benchmarks]
        errors = [cells.get((model, b), (float("nan"), float("nan")))[1] for b in benchmarks]
        writer.writerow([model, *means, *errors])
    return buffer.getvalue()
