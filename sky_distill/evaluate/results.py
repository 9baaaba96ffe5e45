"""Eval results as tables for analysis (notebooks): summaries and samples as pandas frames."""

from __future__ import annotations

from pathlib import Path

from sky_distill.evaluate.tables import DETAIL_KEYS, collect_summaries
from sky_distill.records import EvalSample, read_jsonl_strict


def summaries_frame(eval_dir: str | Path):
    """One row per complete (model, benchmark): avg@n with its error and interval, and what sits next to it."""
    import pandas as pd

    rows = []
    for s in collect_summaries(eval_dir):
        p = f"eval/{s['benchmark']}"
        rows.append(
            {
                "model": s["model"],
                "benchmark": s["benchmark"],
                "n": s.get("n"),
                "problems": s.get("problems"),
                "avg@n": s[f"{p}/avg@n"],
                "stderr": s.get(f"{p}/avg@n_stderr"),
                "ci_low": s.get(f"{p}/avg@n_ci_low"),
                "ci_high": s.get(f"{p}/avg@n_ci_high"),
                **{key: s.get(f"{p}/{key}") for key in DETAIL_KEYS},
            }
        )
    return pd.DataFrame(rows)


def samples_frame(eval_dir: str | Path):
    """Every scored sample of every complete (model, benchmark), without the response text."""
    import pandas as pd

    rows = []
    for complete in sorted(Path(eval_dir).glob("*/*/COMPLETE.json")):
        for sample in read_jsonl_strict(complete.parent / "samples.jsonl", EvalSample):
            rows.append(sample.model_dump(exclude={"response"}) | {"response_chars": len(sample.response)})
    return pd.DataFrame(rows)


def accuracy_by_length(samples, bins: int = 4, length: str = "completion_tokens"):
    """Accuracy per model in `bins` quantile bins of response length (bins computed per model)."""
    import pandas as pd

    parts = []
    for model, group in samples.groupby("model"):
        labels = pd.qcut(group[length].rank(method="first"), q=min(bins, len(group)), labels=False)
        stats = group.groupby(labels).agg(
            accuracy=("correct", "mean"), count=("correct", "size"), median_length=(length, "median")
        )
        parts.append(stats.reset_index(names="bin").assign(model=model))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
