"""`sky-distill export`: share a run's results in Hugging Face forms.

Writes `<run_dir>/export/dataset/` (the kept SFT data as parquet with a dataset card; opens with
`datasets.load_dataset`), a model card `README.md` in `<run_dir>/train/<export.model>/final/`, and
`<run_dir>/export/harness/<model>/` (eval results in lm-evaluation-harness / lighteval layout).
With `export.push=true`, pushes the dataset (and the model) through `huggingface_hub`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sky_distill.config import stage_config
from sky_distill.errors import MissingInputError
from sky_distill.runs import completion, mark_complete, read_json

log = logging.getLogger(__name__)
SFT_FILES = {"verified": "verified.jsonl", "all": "all.jsonl"}


def run(cfg: Any) -> dict[str, Any]:
    from sky_distill.evaluate.harness_layout import write_harness_layout
    from sky_distill.export.dataset import export_dataset
    from sky_distill.export.model_card import write_model_card
    from sky_distill.export.push import push_folder

    typed = stage_config(cfg, "export")
    config, paths = typed["export"], typed["paths"]
    run_dir = Path(paths.run_dir)
    out = run_dir / "export"
    summary: dict[str, Any] = {}
    if config.dataset:
        verify_dir = run_dir / "verify"
        report = completion(verify_dir)
        if report is None:
            raise MissingInputError(f"no complete verification in {verify_dir}; run `sky-distill verify` first")
        name = config.name or f"{run_dir.name}-{config.dataset}"
        facts = export_dataset(verify_dir / "sft" / SFT_FILES[config.dataset], out / "dataset", name, report)
        summary["export/dataset"] = {key: facts[key] for key in ("path", "examples", "problems", "fingerprint")}
        if config.push:
            summary["export/dataset"]["pushed"] = push_folder(
                out / "dataset", config.dataset_repo, "dataset", config.endpoint, config.private
            )
    if config.model:
        train_dir = run_dir / "train" / config.model
        if completion(train_dir) is None:
            raise MissingInputError(f"no complete training in {train_dir}; run `sky-distill train` first")
        card = write_model_card(train_dir, run_dir / "eval", config.dataset_repo)
        summary["export/model_card"] = str(card)
        if config.push:
            summary["export/model_pushed"] = push_folder(
                card.parent, config.model_repo, "model", config.endpoint, config.private
            )
    if config.harness and (run_dir / "eval").exists():
        files = write_harness_layout(run_dir / "eval", out / "harness")
        summary["export/harness_files"] = len(files)
    mark_complete(out, {**summary, "config": config.model_dump()})
    log.info("export: %s", summary)
    return summary


def read_export(run_dir: str | Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / "export" / "COMPLETE.json")
