"""`sky-distill generate`: the teacher samples n traces per problem of one shard, resumably.

Output in `<run_dir>/generate/`: `problems/shard-i-of-N.jsonl` (the shard's problems) and in
`shards/`: `shard-i-of-N.jsonl` (one Trace per line, append-only), `.settings.json` (what the
traces depend on), `.errors.jsonl` (every rejected record, prompt and failed request of the
last run) and `.summary.json`. Once every shard is complete, `sky-distill merge` (or this
stage itself, for a single shard) writes `traces.jsonl` and `COMPLETE.json`. A re-run
generates only the missing samples.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any

from sky_distill.config import TaskConfig, stage_config, to_container
from sky_distill.errors import SkyDistillError
from sky_distill.generate.merge import merge_shards, shards_fingerprint
from sky_distill.generate.sampling import LazyEngine, Locations, generate_shard
from sky_distill.generate.shards import select_shard, shard_name
from sky_distill.models.reference import check_model_reference
from sky_distill.records import Problem, RecordError, write_jsonl
from sky_distill.runs import completion, provenance
from sky_distill.tasks.loader import load_task_problems_located

log = logging.getLogger(__name__)


def exit_on_sigterm() -> None:
    """SLURM sends SIGTERM before it kills a job: leave through `finally`, so buffered samples are written."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def load_problems(task: TaskConfig, split: str) -> tuple[list[Problem], list[RecordError], Locations]:
    return load_task_problems_located(task, split)


def run(cfg: Any) -> dict[str, Any]:
    typed = stage_config(cfg, "generate")
    teacher, task, config, paths = typed["teacher"], typed["task"], typed["generate"], typed["paths"]
    exit_on_sigterm()
    if teacher.engine.backend == "vllm":
        check_model_reference(
            teacher.path, "teacher", "set teacher.path, or run `sky-distill bootstrap` for the tiny teacher"
        )
    stage_dir = Path(paths.run_dir) / "generate"
    stage_dir.mkdir(parents=True, exist_ok=True)
    problems, load_errors, locations = load_problems(task, config.split)
    if not problems:
        example = f", e.g. {load_errors[0]}" if load_errors else ""
        raise SkyDistillError(
            f"task {task.name!r} has no usable problems in split {config.split!r} "
            f"({len(load_errors)} records rejected{example})"
        )
    if load_errors:
        log.warning("%d problem records rejected, e.g. %s", len(load_errors), load_errors[0])
    plain = to_container(cfg)
    # One shard (a SLURM array task), or with generate.all_shards every shard in turn on one engine.
    indices = range(config.shard_count) if config.all_shards else [config.shard_index]
    engine = LazyEngine(teacher, config.sampling.seed)
    summaries = []
    try:
        for index in indices:
            shard_config = config.model_copy(update={"shard_index": index})
            name = shard_name(index, config.shard_count)
            shard = select_shard(problems, index, config.shard_count)
            write_jsonl(stage_dir / "problems" / f"{name}.jsonl", shard)
            summaries.append(
                generate_shard(
                    shard,
                    teacher,
                    shard_config,
                    stage_dir / "shards",
                    engine,
                    problem_errors=load_errors,
                    locations=locations,
                    provenance=provenance("generate", plain),
                )
            )
    finally:
        engine.close()
    drop = ("provenance", "excluded_problems")
    result = {key: value for key, value in summaries[-1].items() if key not in drop}
    if len(summaries) > 1:
        result = {"shards": [{key: value for key, value in s.items() if key not in drop} for s in summaries]}
    complete = all(summary["complete"] for summary in summaries)
    if complete and len(summaries) == config.shard_count:
        merged = completion(stage_dir)
        if merged is None or merged.get("shards_fingerprint") != shards_fingerprint(summaries):
            merged = merge_shards(stage_dir, config.shard_count, provenance("generate", plain))
        result["merged"] = {key: value for key, value in merged.items() if key.startswith("gen/") or key == "traces"}
    elif complete:
        log.info("%s complete; once all %d shards are, run `sky-distill merge`", name, config.shard_count)
    else:
        for summary in summaries:
            if not summary["complete"]:
                log.warning(
                    "%s incomplete (%d of %d samples); re-run to resume",
                    summary["shard"],
                    summary["done_samples"],
                    summary["expected_samples"],
                )
    return result
