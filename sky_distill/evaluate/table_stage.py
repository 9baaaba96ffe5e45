"""`sky-distill table`: compare eval results (this run, other runs, published baselines).

Writes `<run_dir>/tables/results.{md,csv,tex}` (the comparison), `details.md` (every score
with its interval, lengths and failure rates) and, with `eval.table.compare=[a,b]`,
`compare_<a>_vs_<b>.{md,json}` (a paired comparison on the same problems).

An experiment over seeds (`seeds: [...]`, or `eval.table.seed_runs`) gets `seeds.{md,json}`
instead: each model's across-seed mean, between-seed spread and seeds x problems interval, and
the paired differences of `eval.table.pairs`; `results.md` is then that table.
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path
from typing import Any

from sky_distill.config import role_names, stage_config, to_container
from sky_distill.errors import MissingInputError
from sky_distill.evaluate.baselines import load_baselines
from sky_distill.evaluate.compare import compare_models, comparison_markdown
from sky_distill.evaluate.seed_table import seed_markdown, seed_tables
from sky_distill.evaluate.tables import (
    build_table,
    collect_summaries,
    csv_table,
    details_table,
    latex_table,
    markdown_table,
)
from sky_distill.runs import seed_run_dir, write_json_atomic

log = logging.getLogger(__name__)


def seed_runs_of(plain: dict[str, Any], run_dir: Path, listed: list[str]) -> list[Path]:
    """The run directories to aggregate as seeds: `eval.table.seed_runs` (globs), else `seeds`."""
    if listed:
        runs = sorted({Path(match) for pattern in listed for match in glob.glob(pattern) if Path(match).is_dir()})
        if not runs:
            raise MissingInputError(f"eval.table.seed_runs {listed} matches no directory")
        return runs
    seeds = plain.get("seeds") or []
    runs = [seed_run_dir(run_dir, int(seed)) for seed in seeds]
    missing = [str(run) for run in runs if not (run / "eval").is_dir()]
    if missing:
        raise MissingInputError(
            f"seeds {list(seeds)}: no eval results in {', '.join(missing)}; run the pipeline for every seed, "
            "or set seeds=null to table a single run"
        )
    return runs


def run_seed_table(
    plain: dict[str, Any], config: Any, seed_runs: list[Path], run_dir: Path, out: Path
) -> dict[str, Any]:
    roles = role_names(plain)
    models = [roles.get(name, name) for name in plain.get("pipeline", {}).get("eval_models", [])] or config.models
    pairs = []
    for a, b in config.table.pairs:
        a, b = roles.get(a, a), roles.get(b, b)
        if a in models and b in models:
            pairs.append((a, b))
        else:
            log.info("eval.table.pairs: %s - %s skipped (not both evaluated in this run)", a, b)
    results = seed_tables(
        seed_runs,
        models,
        config.benchmarks,
        pairs,
        config.bootstrap_resamples,
        config.confidence,
        config.sampling.seed,
        shared_run=run_dir,
    )
    labels = {roles["teacher"]: f"{roles['teacher']} (teacher)", roles["student"]: f"{roles['student']} (base student)"}
    markdown = seed_markdown(results, labels)
    out.mkdir(parents=True, exist_ok=True)
    (out / "seeds.md").write_text(markdown + "\n")
    (out / "results.md").write_text(markdown + "\n")
    write_json_atomic(out / "seeds.json", results)
    return {
        "table": markdown,
        "files": {"md": str(out / "seeds.md"), "json": str(out / "seeds.json")},
        "seeds": results,
    }


def run(cfg: Any) -> dict[str, Any]:
    typed = stage_config(cfg, "table")
    paths, config = typed["paths"], typed["eval"]
    options = config.table
    run_dir = Path(paths.run_dir)
    seed_runs = seed_runs_of(to_container(cfg), run_dir, options.seed_runs)
    if seed_runs:
        return run_seed_table(to_container(cfg), config, seed_runs, run_dir, run_dir / "tables")
    others = [Path(path) for path in options.runs]
    for other in others:
        if not (other / "eval").is_dir():
            raise MissingInputError(f"eval.table.runs: {other} has no eval/ directory")
    label = run_dir.name if others else None
    summaries = collect_summaries(run_dir / "eval", label)
    for other in others:
        summaries += collect_summaries(other / "eval", other.name)
    if not summaries:
        raise MissingInputError(f"no eval results in {run_dir / 'eval'}; run `sky-distill eval` first")
    baselines = load_baselines(options.baselines, config.registry_dir)
    plain = to_container(cfg)
    roles = role_names(plain)
    order = [roles.get(name, name) for name in plain.get("pipeline", {}).get("eval_models", [])]
    if label:
        order = [f"{label}/{name}" for name in order]
    table = build_table(summaries, options.metric, order, baselines)
    markdown = markdown_table(table)
    out = run_dir / "tables"
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    if "md" in options.formats:
        (out / "results.md").write_text(markdown + "\n")
        written["md"] = str(out / "results.md")
    if "csv" in options.formats:
        shown = {(s.benchmark) for s in baselines} & set(table.columns)
        (out / "results.csv").write_text(
            csv_table(summaries, options.metric, [s for s in baselines if s.benchmark in shown])
        )
        written["csv"] = str(out / "results.csv")
    if "tex" in options.formats:
        (out / "results.tex").write_text(latex_table(table) + "\n")
        written["tex"] = str(out / "results.tex")
    (out / "details.md").write_text(details_table(summaries) + "\n")
    result: dict[str, Any] = {"table": markdown, "files": written}
    if options.compare:
        model_a, model_b = (roles.get(name, name) for name in options.compare)
        comparison = compare_models(
            run_dir / "eval", model_a, model_b, config.bootstrap_resamples, config.confidence, config.sampling.seed
        )
        text = comparison_markdown(model_a, model_b, comparison)
        stem = f"compare_{model_a}_vs_{model_b}".replace("/", "_")
        (out / f"{stem}.md").write_text(text + "\n")
        write_json_atomic(out / f"{stem}.json", comparison)
        result["table"] = markdown + "\n\n" + text
        result["comparison"] = comparison
    return result
