"""`sky-distill table`: the comparison table of this run's eval results (markdown and CSV)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sky_distill.config import stage_config
from sky_distill.errors import MissingInputError
from sky_distill.evaluate.tables import collect_summaries, csv_table, markdown_table


def run(cfg: Any) -> dict[str, Any]:
    from sky_distill.config import to_container

    paths = stage_config(cfg, "table")["paths"]
    run_dir = Path(paths.run_dir)
    summaries = collect_summaries(run_dir / "eval")
    if not summaries:
        raise MissingInputError(f"no eval results in {run_dir / 'eval'}; run `sky-distill eval` first")
    plain = to_container(cfg)
    roles = {"teacher": plain["teacher"]["name"], "student": plain["student"]["name"]}
    order = [roles.get(name, name) for name in plain.get("pipeline", {}).get("eval_models", [])]
    table = markdown_table(summaries, order=order)
    out = run_dir / "tables"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(table + "\n")
    (out / "results.csv").write_text(csv_table(summaries))
    return {"table": table, "markdown": str(out / "results.md")}
