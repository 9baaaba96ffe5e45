"""Metric tracking: every metric goes to a `metrics.jsonl` file and, if configured, to wandb."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from sky_distill.config import LoggerConfig

log = logging.getLogger(__name__)


class Tracker:
    """Namespaced metrics (`train/loss`, `gen/tok_per_s`) with the same names everywhere."""

    def __init__(
        self, metrics_file: str | Path, logger: LoggerConfig, run_config: dict[str, Any], directory: str | Path
    ):
        self.metrics_file = Path(metrics_file)
        self.metrics_file.parent.mkdir(parents=True, exist_ok=True)
        self._wandb_run = None
        if logger.backend == "wandb" and logger.mode != "disabled":
            import wandb

            self._wandb_run = wandb.init(
                project=logger.project,
                entity=logger.entity,
                name=logger.run_name,
                mode=logger.mode,
                tags=logger.tags,
                config=run_config,
                dir=str(directory),
                resume="allow",
                id=_wandb_id(logger.run_name or "run", str(directory)),
            )

    def log(self, metrics: dict[str, Any], step: int) -> None:
        with open(self.metrics_file, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **metrics}) + "\n")
        if self._wandb_run is not None:
            self._wandb_run.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self._wandb_run is not None:
            self._wandb_run.summary.update({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))})

    def finish(self) -> None:
        if self._wandb_run is not None:
            self._wandb_run.finish()


def _wandb_id(name: str, directory: str) -> str:
    """A stable id per output directory, so a resumed run continues the same wandb run."""
    from sky_distill.runs import fingerprint_object

    return f"{name[:40]}-{fingerprint_object(directory)}".replace("/", "-")


def read_metrics(metrics_file: str | Path) -> list[dict[str, Any]]:
    path = Path(metrics_file)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
