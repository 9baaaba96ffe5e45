"""Published scores kept in `eval/baselines/*.yaml`, each number with the source it comes from.

A file names one source (title, url, the settings it states) and its scores, in percent:

    scores:
      DeepSeek-R1-Distill-Qwen-32B:
        aime24/pass@1: 72.6
        livecodebench/difficulty=easy/accuracy: 86.3          # a group of a benchmark
        gpqa_diamond/accuracy: {value: 65.2, note: "..."}     # with a note on the number
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sky_distill.benchmarks.registry import REPO_EVAL_DIR
from sky_distill.errors import SkyDistillError


class BaselineError(SkyDistillError, ValueError):
    """A baseline file that cannot be read, or a baseline name that does not exist."""


@dataclass(frozen=True)
class BaselineSource:
    key: str  # the file stem
    title: str
    url: str
    settings: str = ""

    def citation(self) -> str:
        settings = f" ({self.settings.strip()})" if self.settings.strip() else ""
        return f"{self.title}, {self.url}{settings}"


@dataclass(frozen=True)
class BaselineScore:
    model: str
    benchmark: str
    group: str | None  # e.g. "difficulty=easy"
    metric: str  # as published: pass@1, cons@64, accuracy
    value: float  # percent
    source: BaselineSource
    note: str = ""


METRIC_ALIASES = {"avg@n": {"avg@n", "pass@1", "accuracy"}, "pass@1": {"avg@n", "pass@1", "accuracy"}}


def metric_matches(table_metric: str, published: str) -> bool:
    """Whether a published metric is what a table column shows (pass@1 = avg@n = accuracy; cons@k = maj@k)."""
    if published == table_metric or published in METRIC_ALIASES.get(table_metric, set()):
        return True
    majority = re.fullmatch(r"(?:maj|cons)@(\d+)", table_metric)
    return bool(majority) and published in (f"maj@{majority.group(1)}", f"cons@{majority.group(1)}")


def read_baseline_file(path: Path) -> list[BaselineScore]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise BaselineError(f"{path}: not valid YAML ({error})") from error
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("source"), dict)
        or not isinstance(data.get("scores"), dict)
    ):
        raise BaselineError(f"{path}: needs a `source` mapping (title, url) and a `scores` mapping")
    info = data["source"]
    for key in ("title", "url"):
        if not info.get(key):
            raise BaselineError(f"{path}: source.{key} is missing; every number needs its source")
    source = BaselineSource(path.stem, str(info["title"]), str(info["url"]), str(info.get("settings") or ""))
    scores = []
    for model, entries in data["scores"].items():
        if not isinstance(entries, dict):
            raise BaselineError(f"{path}: scores.{model}: expected `benchmark/metric: value` entries")
        for key, entry in entries.items():
            parts = str(key).split("/")
            if len(parts) not in (2, 3) or not all(parts):
                raise BaselineError(f"{path}: scores.{model}.{key}: expected benchmark[/group]/metric")
            value, note = (entry.get("value"), str(entry.get("note", ""))) if isinstance(entry, dict) else (entry, "")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
                raise BaselineError(f"{path}: scores.{model}.{key}: expected a percentage, got {value!r}")
            group = parts[1] if len(parts) == 3 else None
            scores.append(BaselineScore(str(model), parts[0], group, parts[-1], float(value), source, note))
    return scores


def load_baselines(names: list[str] | str = "all", eval_dir: str | Path | None = None) -> list[BaselineScore]:
    """The scores of the named baseline files (stems in `eval/baselines/`), or of all of them."""
    directory = (Path(eval_dir) if eval_dir else REPO_EVAL_DIR) / "baselines"
    available = {path.stem: path for path in sorted(directory.glob("*.yaml"))} if directory.is_dir() else {}
    chosen = list(available) if names == "all" else list(names)
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise BaselineError(f"unknown baseline {unknown[0]!r}; available: {', '.join(available) or 'none'}")
    scores: list[BaselineScore] = []
    for name in chosen:
        scores += read_baseline_file(available[name])
    return scores


def baseline_cells(
    scores: list[BaselineScore], benchmarks: list[str], metric: str
) -> dict[tuple[str, str, str], BaselineScore]:
    """(model, source, benchmark) -> the matching whole-benchmark score (groups go to the CSV only)."""
    cells: dict[tuple[str, str, str], BaselineScore] = {}
    for score in scores:
        if score.group is None and score.benchmark in benchmarks and metric_matches(metric, score.metric):
            cells.setdefault((score.model, score.source.key, score.benchmark), score)
    return cells


def as_records(scores: list[BaselineScore]) -> list[dict[str, Any]]:
    return [
        {
            "model": s.model,
            "benchmark": s.benchmark,
            "group": s.group,
            "metric": s.metric,
            "value": s.value,
            "note": s.note,
            "source": s.source.citation(),
        }
        for s in scores
    ]
