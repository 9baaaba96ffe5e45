"""`sky-distill pipeline`: every stage in order, each as its own process, skipping complete ones.

Each stage runs as `python -m sky_distill.cli <stage> <the same overrides>`, so the pipeline
does exactly what running the stages by hand would do (and what slurm/pipeline.py submits to SLURM).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sky_distill.config import stage_config, to_container
from sky_distill.errors import SkyDistillError
from sky_distill.runs import completion, write_json_atomic

log = logging.getLogger(__name__)


class StageFailedError(SkyDistillError):
    pass


@dataclass(frozen=True)
class Step:
    label: str
    stage: str
    overrides: tuple[str, ...]
    outputs: tuple[Path, ...]  # directories whose COMPLETE.json means the step is done


def plan_steps(plain: dict[str, Any], run_dir: Path) -> list[Step]:
    """The pipeline's steps for its config: stages in order, one train step per student."""
    pipeline = plain["pipeline"]
    students = pipeline["students"]
    eval_models = list(pipeline["eval_models"])
    benchmarks = plain["eval"]["benchmarks"]
    steps: list[Step] = []
    for stage in pipeline["stages"]:
        if stage == "bootstrap":
            steps.append(Step("bootstrap", "bootstrap", (), ()))
        elif stage == "generate":  # every shard in turn, then the merge (slurm/pipeline.py: an array job)
            shards = ("generate.all_shards=true",) if int(plain["generate"]["shard_count"]) > 1 else ()
            steps.append(Step("generate", "generate", shards, (run_dir / "generate",)))
        elif stage == "verify":
            steps.append(Step("verify", "verify", (), (run_dir / "verify",)))
        elif stage == "train":
            for student in students:
                overrides = (*student.get("overrides", []), f"train.name={student['name']}")
                steps.append(
                    Step(f"train {student['name']}", "train", overrides, (run_dir / "train" / student["name"],))
                )
        elif stage == "eval":
            roles = {"teacher": plain["teacher"]["name"], "student": plain["student"]["name"]}
            names = [roles.get(model, model) for model in eval_models]
            outputs = tuple(run_dir / "eval" / name / benchmark for name in names for benchmark in benchmarks)
            steps.append(Step("eval", "eval", (f"eval.models=[{','.join(eval_models)}]",), outputs))
        elif stage == "table":
            steps.append(Step("table", "table", (), ()))
        else:
            raise SkyDistillError(f"pipeline.stages has unknown stage {stage!r}")
    return steps


def user_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return [item for item in HydraConfig.get().overrides.task if not item.startswith("stage=")]


def quote_override(value: str) -> str:
    """A value as a quoted Hydra override string (run directories of sweeps contain `=` and `,`)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def run(cfg: Any) -> dict[str, Any]:
    typed = stage_config(cfg, "pipeline")
    run_dir = Path(typed["paths"].run_dir)
    plain = to_container(cfg)
    # Every stage gets the resolved run directory, so that a sweep job's stages write where it does.
    overrides = [*user_overrides(), f"paths.run_dir={quote_override(str(run_dir))}"]
    timings: dict[str, float] = {}
    started = time.perf_counter()
    result: dict[str, Any] = {}
    for step in plan_steps(plain, run_dir):
        if step.outputs and all(completion(path) is not None for path in step.outputs):
            log.info("pipeline: %s is complete, skipping", step.label)
            timings[step.label] = 0.0
            continue
        command = [sys.executable, "-m", "sky_distill.cli", step.stage, *overrides, *step.overrides]
        log.info("pipeline: %s", " ".join(command[2:]))
        step_start = time.perf_counter()
        completed = subprocess.run(command)
        timings[step.label] = round(time.perf_counter() - step_start, 1)
        if completed.returncode != 0:
            raise StageFailedError(
                f"stage '{step.label}' failed (exit {completed.returncode}); fix it and re-run: complete stages are skipped"
            )
    timings["total"] = round(time.perf_counter() - started, 1)
    table_file = run_dir / "tables" / "results.md"
    result["timings_s"] = timings
    if table_file.exists():
        result["table"] = table_file.read_text().strip()
    write_json_atomic(run_dir / "pipeline.json", {"timings_s": timings, "overrides": overrides})
    return result
