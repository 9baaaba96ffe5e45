"""Metric tracking: every metric goes to a `metrics.jsonl` file and, if configured, to wandb.

wandb's mode is `logger.mode` when set, else `WANDB_MODE`, else online; `check_tracker` fails
before any model loads when an online run has no API key.
"""

from __future__ import annotations

import json
import logging
import netrc
import os
from pathlib import Path
from typing import Any

from sky_distill.config import LoggerConfig
from sky_distill.errors import SkyDistillError

log = logging.getLogger(__name__)


class Tracker:
    """Namespaced metrics (`train/loss`, `gen/tok_per_s`) with the same names everywhere."""

    def __init__(
        self, metrics_file: str | Path, logger: LoggerConfig, run_config: dict[str, Any], directory: str | Path
    ):
        self.metrics_file = Path(metrics_file)
        self.metrics_file.parent.mkdir(parents=True, exist_ok=True)
        self._wandb_run = None
        mode = wandb_mode(logger)
        if logger.backend == "wandb" and mode != "disabled":
            import wandb

            self._wandb_run = wandb.init(
                project=logger.project,
                entity=logger.entity,
                name=logger.run_name,
                mode=mode,
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


def wandb_mode(logger: Any) -> str:
    """`logger.mode` if set, else the WANDB_MODE environment variable (wandb's own switch), else online."""
    mode = getattr(logger, "mode", None) or os.environ.get("WANDB_MODE") or "online"
    return "disabled" if mode in ("disabled", "dryrun") else ("offline" if mode == "offline" else "online")


def has_wandb_key(environ: dict[str, str] | None = None) -> bool:
    """An API key in WANDB_API_KEY or in ~/.netrc (where `wandb login` writes it)."""
    environ = dict(os.environ) if environ is None else environ
    if environ.get("WANDB_API_KEY"):
        return True
    host = (environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").split("://")[-1].split("/")[0].split(":")[0]
    try:
        return netrc.netrc(environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def check_tracker(logger: Any) -> None:
    """Fail now, in one line, when an online wandb run could not start (no API key)."""
    if getattr(logger, "backend", None) != "wandb" or wandb_mode(logger) != "online" or has_wandb_key():
        return
    raise SkyDistillError(
        "logger=wandb in online mode needs an API key: run `wandb login` (or set WANDB_API_KEY), "
        "or log offline with WANDB_MODE=offline (or logger.mode=offline), or use logger=none"
    )


def _wandb_id(name: str, directory: str) -> str:
    """A stable id per output directory, so a resumed run continues the same wandb run."""
    from sky_distill.runs import fingerprint_object

    return f"{name[:40]}-{fingerprint_object(directory)}".replace("/", "-")


def read_metrics(metrics_file: str | Path) -> list[dict[str, Any]]:
    path = Path(metrics_file)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
