"""A model card (README.md) for a trained student: base model, data and its fingerprint, recipe,
training curve summary, and the eval table with intervals. Pure apart from `write_model_card`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sky_distill.runs import read_json

RECIPE_KEYS = (
    "epochs", "max_steps", "learning_rate", "lr_scheduler", "warmup_ratio", "weight_decay", "global_batch_size",
    "batch_unit", "max_seq_len", "packing", "loss", "precision", "num_procs", "num_nodes", "seed", "data_format",
)  # fmt: skip


def curve_summary(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Steps, and the loss at the start, the end and its lowest (from metrics.jsonl rows)."""
    losses = [(row["step"], row["train/loss"]) for row in metrics if "train/loss" in row and "step" in row]
    if not losses:
        return {"steps": 0}
    tokens = [row["train/tokens_total"] for row in metrics if "train/tokens_total" in row]
    low = min(losses, key=lambda item: item[1])
    return {
        "steps": losses[-1][0],
        "first_step": losses[0][0],
        "first_loss": losses[0][1],
        "last_loss": losses[-1][1],
        "lowest_loss": low[1],
        "lowest_at": low[0],
        **({"tokens": tokens[-1]} if tokens else {}),
    }


def eval_rows(summaries: list[dict[str, Any]]) -> list[list[str]]:
    """benchmark, n, problems, avg@n with its interval."""
    rows = []
    for summary in sorted(summaries, key=lambda s: s["benchmark"]):
        prefix = f"eval/{summary['benchmark']}/avg@n"
        low, high = summary.get(f"{prefix}_ci_low"), summary.get(f"{prefix}_ci_high")
        interval = f"[{low:.1%}, {high:.1%}]" if low is not None and high is not None else "n/a"
        rows.append(
            [
                summary["benchmark"],
                str(summary.get("n")),
                str(summary.get("problems")),
                f"{summary[prefix]:.1%}",
                interval,
            ]
        )
    return rows


def model_card(
    name: str,
    job: dict[str, Any],
    metrics: list[dict[str, Any]],
    summaries: list[dict[str, Any]],
    sources: dict[str, Any] | None,
    dataset_repo: str | None = None,
) -> str:
    train = job["train"]
    inputs = job.get("provenance", {}).get("inputs", {})
    curve = curve_summary(metrics)
    header = [
        "---",
        "library_name: transformers",
        f"base_model: {train['init']}",
        "tags:",
        "- sky-distill",
        "- distillation",
    ]
    if dataset_repo:
        header += ["datasets:", f"- {dataset_repo}"]
    parts = [
        "\n".join([*header, "---"]),
        f"# {name}",
        f"Fine-tuned from `{train['init']}` with sky-distill (SFT on teacher traces).",
    ]
    data = train["data"] if isinstance(train["data"], str) else "files / datasets"
    lines = [f"- train.data: `{data}`; fingerprint `{inputs.get('data', 'n/a')}`"]
    if sources:
        lines += [
            f"- {s['name']}: `{s['origin']}`, layout {s['layout']}, {s['written']} examples (weight {s['weight']:g})"
            for s in sources.get("sources", [])
        ]
    if dataset_repo:
        lines.append(f"- published as `{dataset_repo}`")
    parts.append("## Data\n" + "\n".join(lines))
    keys = [key for key in RECIPE_KEYS if key in train and (key != "data_format" or sources)]
    recipe = "\n".join(f"| {key} | {train[key]} |" for key in keys)
    zero = job.get("zero", {}).get("stage")
    parts.append(f"## Recipe\n| key | value |\n|---|---|\n{recipe}\n| deepspeed zero stage | {zero} |")
    if curve["steps"] and curve["first_step"] == curve["steps"]:
        text = (
            f"{curve['steps']} steps; loss {curve['last_loss']:.4f} at the end (the only logged step: train.log_every)."
        )
    elif curve["steps"]:
        text = (
            f"{curve['steps']} steps; loss {curve['first_loss']:.4f} at step {curve['first_step']}, "
            f"{curve['last_loss']:.4f} at step {curve['steps']}, "
            f"lowest {curve['lowest_loss']:.4f} (step {curve['lowest_at']})"
            + (f"; {curve['tokens']} tokens" if "tokens" in curve else "")
            + "."
        )
    else:
        text = "No training metrics recorded."
    parts.append("## Training curve\n" + text)
    if summaries:
        table = ["| benchmark | n | problems | avg@n | interval |", "|---|---|---|---|---|"]
        table += ["| " + " | ".join(row) + " |" for row in eval_rows(summaries)]
        confidence = summaries[0].get("confidence")
        note = (
            f" ({confidence:.0%} bootstrap intervals over problems)"
            if confidence
            else " (bootstrap intervals over problems)"
        )
        parts.append("## Evaluation" + note + "\n" + "\n".join(table))
    else:
        parts.append("## Evaluation\nNot evaluated yet (`sky-distill eval eval.models=[" + name + "]`).")
    return "\n\n".join(parts) + "\n"


def write_model_card(train_dir: str | Path, eval_dir: str | Path, dataset_repo: str | None = None) -> Path:
    """README.md in `<train_dir>/final/` from job.json, metrics.jsonl, data sources and eval summaries."""
    from sky_distill.tracking import read_metrics

    train_dir = Path(train_dir)
    job = read_json(train_dir / "job.json")
    name = job["train"]["name"]
    metrics = read_metrics(train_dir / "metrics.jsonl") if (train_dir / "metrics.jsonl").exists() else []
    summaries = [read_json(p.parent / "summary.json") for p in sorted(Path(eval_dir).glob(f"{name}/*/COMPLETE.json"))]
    sources_file = train_dir / "data" / "data_sources.json"
    sources = read_json(sources_file) if sources_file.exists() else None
    card = train_dir / "final" / "README.md"
    card.write_text(model_card(name, job, metrics, summaries, sources, dataset_repo), encoding="utf-8")
    return card
