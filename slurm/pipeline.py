#!/usr/bin/env python3
"""Submit the whole pipeline to SLURM: one job per step, chained with `--dependency=afterok`.

    python slurm/pipeline.py [options] [key=value ...]       # the same overrides as `sky-distill pipeline`

The steps are those `sky-distill pipeline` runs (`sky_distill.pipeline.plan_steps`), with the
same skipping of complete ones, mapped onto the scripts in slurm/: generation becomes an
array job of `generate.shard_count` tasks followed by a merge, each trained student its own
training job, and each evaluated model its own eval job (the teacher's and the base student's
start as soon as the models exist, a trained student's when its training ends). Every job gets
the same overrides, so all of them resolve the same run directory; a failed job cancels its
dependants (`--kill-on-invalid-dep=yes`). The submitted jobs are listed in
`<run_dir>/logs/slurm/jobs-<time>.json` and SLURM's logs go to `<run_dir>/logs/slurm/`.

Resources: each script's #SBATCH lines hold the defaults; add sbatch options for every job
with `--sbatch=--partition=gpu` and for one stage with e.g. `--sbatch-train=--nodes=4`.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sky_distill.pipeline import Step

SLURM_DIR = Path(__file__).resolve().parent
REPO = SLURM_DIR.parent
STAGES = ("bootstrap", "serve", "generate", "merge", "verify", "train", "eval", "table")


@dataclass
class Job:
    """One sbatch submission: a stage script, its overrides, and the jobs it waits for."""

    label: str
    stage: str
    overrides: list[str]
    after: list[str] = field(default_factory=list)  # labels of jobs this one depends on (afterok)
    array: int | None = None  # number of array tasks (generation shards)
    after_start: list[str] = field(default_factory=list)  # labels of jobs that need only have started (a server)
    sbatch: list[str] = field(default_factory=list)  # options from the config (GPUs, the server's URL file)


def compose(overrides: list[str]) -> Any:
    """The pipeline's config for these overrides, exactly as `sky-distill pipeline` composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from sky_distill.cli import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose("config", overrides=[*overrides, "stage=pipeline"], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        return cfg


def plan_jobs(plain: dict[str, Any], run_dir: Path, overrides: list[str]) -> list[Job]:
    """The SLURM jobs for a pipeline config, skipping steps whose outputs are complete.

    An experiment over seeds (`seeds: [...]`) is one chain of jobs per seed (labels `seed-<s>.<job>`),
    each waiting only for its own seed's jobs and the shared bootstrap; the table waits for all.
    """
    from sky_distill.pipeline import plan_steps
    from sky_distill.runs import completion

    def complete(step: Step) -> bool:
        return bool(step.outputs) and all(completion(path) is not None for path in step.outputs)

    students = {student["name"] for student in plain["pipeline"]["students"]}
    shard_count = int(plain["generate"]["shard_count"])
    jobs: list[Job] = []
    latest: dict[tuple[str, str], list[str]] = {}  # (chain, stage) -> labels of its submitted jobs

    def add(job: Job, chain: str) -> None:
        jobs.append(job)
        latest.setdefault((chain, job.stage), []).append(job.label)

    def upstream(chain: str, *stages: str) -> list[str]:
        """The submitted jobs of the nearest earlier stage among `stages`, in this chain or shared."""
        for stage in stages:
            for where in dict.fromkeys((chain, "")):
                if latest.get((where, stage)):
                    return list(latest[(where, stage)])
        return []

    for step in plan_steps(plain, run_dir):
        if complete(step):
            continue
        chain = step.chain
        prefix = f"{chain}." if chain else ""
        own = [*overrides, *step.overrides]
        if step.stage == "bootstrap":
            add(Job(f"{prefix}bootstrap", "bootstrap", own), chain)
        elif step.stage == "generate":  # the local step's shards as array tasks (not all_shards)
            teacher = plain["teacher"]
            chain_dir = step.outputs[0].parent
            array_overrides = [*overrides, *(o for o in step.overrides if o != "generate.all_shards=true")]
            options, started = generate_resources(plain, chain_dir), []
            if teacher.get("serve"):
                serve = teacher["serve"]
                nodes = [f"--nodes={serve['nodes']}", f"--gpus-per-node={serve['gpus_per_node']}"]
                after = upstream(chain, "bootstrap")
                add(Job(f"{prefix}serve", "serve", array_overrides, after, sbatch=nodes), chain)
                started = [f"{prefix}serve"]
            add(
                Job(
                    f"{prefix}generate",
                    "generate",
                    array_overrides,
                    upstream(chain, "bootstrap"),
                    array=shard_count,
                    after_start=started,
                    sbatch=options,
                ),
                chain,
            )
            if shard_count > 1:
                add(Job(f"{prefix}merge", "merge", array_overrides, [f"{prefix}generate"]), chain)
        elif step.stage == "verify":
            add(Job(f"{prefix}verify", "verify", own, upstream(chain, "merge", "generate", "bootstrap")), chain)
        elif step.stage == "train":
            name = step.student
            after = upstream(chain, "verify", "merge", "generate", "bootstrap")
            start = [o.split("=", 1)[1] for o in step.overrides if o.startswith("train.on_policy.start_from=")]
            after += [f"{prefix}train-{s}" for s in start if f"{prefix}train-{s}" in latest.get((chain, "train"), [])]
            add(Job(f"{prefix}train-{name}", "train", own, after), chain)
        elif step.stage == "eval":
            for model, model_step in eval_steps(plain, run_dir, chain):
                if complete(model_step):
                    continue
                if model in students:
                    trained = f"{prefix}train-{model}"
                    after = [label for label in latest.get((chain, "train"), []) if label == trained]
                else:
                    after = upstream(chain, "bootstrap")
                label = f"{prefix}eval-{safe_name(model)}"
                add(Job(label, "eval", [*overrides, *model_step.overrides], after), chain)
        elif step.stage == "table":  # after every seed's evals (or the latest stage that ran)
            after: list[str] = []
            for stage in ("eval", "train", "verify", "merge", "generate", "bootstrap"):
                after = [label for (_, planned), labels in latest.items() if planned == stage for label in labels]
                if after:
                    break
            add(Job(f"{prefix}table", "table", own, after), chain)
        else:  # a stage this planner does not know: after everything before it, with its own script
            add(Job(f"{prefix}{step.stage}", step.stage, own, [job.label for job in jobs]), chain)
    return jobs


def generate_resources(plain: dict[str, Any], run_dir: Path) -> list[str]:
    """sbatch options of a generation task from the config: an in-process vLLM teacher gets its
    tensor x data parallel GPUs; a served one waits for the URL its server job writes."""
    teacher = plain["teacher"]
    engine = teacher["engine"]
    if teacher.get("serve"):
        from sky_distill.config import ModelConfig
        from sky_distill.generate.serve import url_file

        path = url_file(run_dir, ModelConfig.model_validate(teacher))
        timeout = int(teacher["serve"]["startup_timeout_s"])
        return [f"--export=ALL,SKY_SERVE_URL_FILE={path},SKY_SERVE_TIMEOUT_S={timeout}"]
    if engine["backend"] == "vllm" and teacher.get("bootstrap") is None:
        return [f"--gpus-per-node={engine['tensor_parallel_size'] * engine['data_parallel_size']}"]
    return []


def safe_name(name: str) -> str:
    """A model name or path as part of a job name and log file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


def eval_steps(plain: dict[str, Any], run_dir: Path, chain: str = "") -> list[tuple[str, Any]]:
    """One eval step per model (its own job) in one seed chain, planned by the pipeline's own planner."""
    from sky_distill.pipeline import plan_steps

    steps = []
    for model in plain["pipeline"]["eval_models"]:
        one = copy.deepcopy(plain)
        one["pipeline"]["stages"] = ["eval"]
        one["pipeline"]["eval_models"] = [model]
        steps += [(model, step) for step in plan_steps(one, run_dir) if step.chain == chain]
    return steps


def sbatch_command(
    job: Job, job_ids: dict[str, str], run_dir: Path, run_name: str, extra: list[str], stage_extra: list[str]
) -> list[str]:
    log_dir = run_dir / "logs" / "slurm"
    pattern = "%x-%A_%a.out" if job.array else "%x-%j.out"
    command = ["sbatch", "--parsable", f"--job-name={run_name}.{job.label}", f"--output={log_dir / pattern}"]
    if job.array:
        command.append(f"--array=0-{job.array - 1}")
    dependencies = []
    if job.after:
        dependencies.append(f"afterok:{':'.join(job_ids[label] for label in job.after)}")
    if job.after_start:
        dependencies.append(f"after:{':'.join(job_ids[label] for label in job.after_start)}")
    if dependencies:
        command += [f"--dependency={','.join(dependencies)}", "--kill-on-invalid-dep=yes"]
    command += [*job.sbatch, *extra, *stage_extra, str(SLURM_DIR / f"{job.stage}.sbatch"), *job.overrides]
    return command


def submit(jobs: list[Job], run_dir: Path, run_name: str, args: argparse.Namespace) -> dict[str, str]:
    """Submit the jobs in order; on a failure cancel the ones already submitted and raise."""
    environ = dict(os.environ, SKY_DISTILL_REPO=str(REPO))
    job_ids: dict[str, str] = {}
    missing = sorted({job.stage for job in jobs if not (SLURM_DIR / f"{job.stage}.sbatch").exists()})
    if missing:
        raise SystemExit(f"slurm/pipeline.py: error: no sbatch script for stage(s) {', '.join(missing)} in {SLURM_DIR}")
    for job in jobs:
        stage_extra = getattr(args, f"sbatch_{job.stage}", None) or []
        command = sbatch_command(job, job_ids, run_dir, run_name, args.sbatch or [], stage_extra)
        if args.dry_run:
            job_ids[job.label] = f"<{job.label}>"
            print(shlex.join(command))
            continue
        result = subprocess.run(command, capture_output=True, text=True, env=environ)
        if result.returncode != 0:
            if job_ids:
                subprocess.run(["scancel", *job_ids.values()], env=environ)
            raise SystemExit(
                f"slurm/pipeline.py: error: sbatch for {job.label} failed: {result.stderr.strip()}"
                + (f"; cancelled the {len(job_ids)} job(s) submitted before it" if job_ids else "")
            )
        job_ids[job.label] = result.stdout.strip().split(";")[0]
    return job_ids


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="slurm/pipeline.py",
        description=__doc__.split("\n\n")[0],
        epilog="Overrides are Hydra's key=value, as for `sky-distill pipeline`.",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to every job")
    parser.add_argument("--sbatch", action="append", metavar="OPTION", help="an sbatch option for every job")
    for stage in STAGES:
        parser.add_argument(
            f"--sbatch-{stage}", action="append", metavar="OPTION", help=f"an sbatch option for {stage}"
        )
    parser.add_argument("--dry-run", action="store_true", help="print the sbatch commands, submit nothing")
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from sky_distill.config import stage_config, to_container
    from sky_distill.errors import SkyDistillError

    try:
        cfg = compose(args.overrides)
        run_dir = Path(stage_config(cfg, "pipeline")["paths"].run_dir)
    except (SkyDistillError, HydraException, OmegaConfBaseException) as error:
        print(f"slurm/pipeline.py: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    plain = to_container(cfg)
    jobs = plan_jobs(plain, run_dir, list(args.overrides))
    if not jobs:
        print(f"slurm/pipeline.py: every step of {run_dir} is complete; nothing to submit")
        return 0
    if not args.dry_run:
        (run_dir / "logs" / "slurm").mkdir(parents=True, exist_ok=True)
    job_ids = submit(jobs, run_dir, plain["run_name"], args)
    width = max(len(job.label) for job in jobs)
    for job in jobs:
        after = ", ".join([*job.after, *(f"{label} (started)" for label in job.after_start)]) or "-"
        tasks = f" ({job.array} array tasks)" if job.array else ""
        print(f"{job.label:<{width}}  {job_ids[job.label]:>10}  after: {after}{tasks}")
    if not args.dry_run:
        record = {
            "submitted": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "overrides": list(args.overrides),
            "jobs": {
                job.label: {
                    "id": job_ids[job.label],
                    "stage": job.stage,
                    "after": job.after,
                    "after_start": job.after_start,
                }
                for job in jobs
            },
        }
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = run_dir / "logs" / "slurm" / f"jobs-{stamp}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"run directory: {run_dir}\njobs: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
