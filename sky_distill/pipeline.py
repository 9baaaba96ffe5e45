"""`sky-distill pipeline`: every stage in order, each as its own process, skipping complete ones.

Each stage runs as `python -m sky_distill.cli <stage> <the same overrides>`, so the pipeline
does exactly what running the stages by hand would do (and what slurm/pipeline.py submits to SLURM).

With `seeds: [0, 1, 2]` the run is an experiment over seeds: the bootstrapped models are built
once (the teacher stands for a given model), then generation, verification, training and the
eval of the trained students run once per seed in `<run_dir>/seed-<s>/` (a chain of its own:
`seed=<s>` and that run directory). Models no seed changes (the teacher, the base student, a
path) are evaluated once, in `<run_dir>/eval/`, and the table aggregates the seeds at
`<run_dir>/tables/`.

Steps of different seeds do not depend on each other: with `pipeline.parallel: N` the seed
chains (and the eval of the fixed models) run side by side, N steps at most at once, each
chain's steps in order. Each running chain gets its own share of the CPU cores for vLLM's
compute threads, the same share when steps run one at a time (the thread count changes vLLM's
numbers on CPU, so a step computes the same either way). Side by side, each step's output goes
to a log file of its own, and the console gets a line as each step starts and ends.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sky_distill.config import role_names, stage_config, to_container
from sky_distill.errors import SkyDistillError
from sky_distill.runs import completion, seed_run_dir, write_json_atomic

log = logging.getLogger(__name__)


class StageFailedError(SkyDistillError):
    pass


@dataclass(frozen=True)
class Step:
    label: str
    stage: str
    overrides: tuple[str, ...]
    outputs: tuple[Path, ...]  # directories whose COMPLETE.json means the step is done
    chain: str = ""  # the seed chain the step belongs to ("seed-0"); "" for shared steps
    student: str | None = None  # a train step's student (pipeline.students[].name)


@dataclass(frozen=True)
class Chain:
    """The stages of one seed: its name, seed, run directory and the overrides that select them."""

    name: str
    seed: int
    run_dir: Path
    overrides: tuple[str, ...]


SHARED_STAGES = ("bootstrap", "table")  # once per experiment; every other stage once per seed


def seed_chains(plain: dict[str, Any], run_dir: Path) -> list[Chain]:
    """One chain per seed of `seeds`, or the run itself (no extra overrides) when `seeds` is unset."""
    seeds = plain.get("seeds")
    if not seeds:
        return [Chain("", int(plain["seed"]), run_dir, ())]
    if len(set(seeds)) != len(seeds):
        raise SkyDistillError(f"seeds {list(seeds)} repeats a seed")
    chains = []
    for seed in seeds:
        directory = seed_run_dir(run_dir, int(seed))
        overrides = (f"seed={int(seed)}", f"paths.run_dir={quote_override(str(directory))}")
        chains.append(Chain(f"seed-{int(seed)}", int(seed), directory, overrides))
    return chains


def plan_steps(plain: dict[str, Any], run_dir: Path) -> list[Step]:
    """The pipeline's steps: shared stages once, the others once per seed chain, in stage order."""
    stages = list(plain["pipeline"]["stages"])
    chains = seed_chains(plain, run_dir)
    steps: list[Step] = []
    position = 0
    while position < len(stages):
        if stages[position] in SHARED_STAGES:
            steps += plan_chain(plain, [stages[position]], Chain("", int(plain["seed"]), run_dir, ()))
            position += 1
            continue
        block = []
        while position < len(stages) and stages[position] not in SHARED_STAGES:
            block.append(stages[position])
            position += 1
        for chain in chains:
            steps += plan_chain(plain, block, chain)
        if "eval" in block and chains[0].name:  # the models no seed changes: once, at the top
            steps += plan_chain(plain, ["eval"], Chain("", int(plain["seed"]), run_dir, ()), fixed_only=True)
    return steps


def trained_names(plain: dict[str, Any]) -> set[str]:
    return {student["name"] for student in plain["pipeline"]["students"]}


def plan_chain(plain: dict[str, Any], stages: list[str], chain: Chain, fixed_only: bool = False) -> list[Step]:
    """The steps of `stages` in one chain: one train step per student, one eval step for its models.

    A seed chain evaluates only the students it trains; `fixed_only` plans the eval of the rest.
    """
    pipeline = plain["pipeline"]
    students = pipeline["students"]
    eval_models = list(pipeline["eval_models"])
    trained = trained_names(plain)
    if chain.name:
        eval_models = [model for model in eval_models if model in trained]
    elif fixed_only:
        eval_models = [model for model in eval_models if model not in trained]
    benchmarks = plain["eval"]["benchmarks"]
    run_dir = chain.run_dir
    prefix = f"{chain.name}: " if chain.name else ""
    steps: list[Step] = []

    def add(
        label: str, stage: str, overrides: tuple[str, ...], outputs: tuple[Path, ...], student: str | None = None
    ) -> None:
        steps.append(Step(prefix + label, stage, (*chain.overrides, *overrides), outputs, chain.name, student))

    for stage in stages:
        if stage == "bootstrap":
            add("bootstrap", "bootstrap", (), ())
        elif stage == "generate":  # every shard in turn, then the merge (slurm/pipeline.py: an array job)
            shards = ("generate.all_shards=true",) if int(plain["generate"]["shard_count"]) > 1 else ()
            add("generate", "generate", shards, (run_dir / "generate",))
        elif stage == "verify":
            add("verify", "verify", (), (run_dir / "verify",))
        elif stage == "train":
            for student in students:
                overrides = (*student.get("overrides", []), f"train.name={student['name']}")
                outputs = (run_dir / "train" / student["name"],)
                add(f"train {student['name']}", "train", overrides, outputs, student["name"])
        elif stage == "eval" and eval_models:
            roles = role_names(plain)
            names = [roles.get(model, model) for model in eval_models]
            outputs = tuple(run_dir / "eval" / name / benchmark for name in names for benchmark in benchmarks)
            add("eval", "eval", (f"eval.models=[{','.join(eval_models)}]",), outputs)
        elif stage == "table":
            add("table", "table", (), ())
        elif stage != "eval":
            raise SkyDistillError(f"pipeline.stages has unknown stage {stage!r}")
    return steps


def plan_lanes(steps: list[Step]) -> list[list[list[Step]]]:
    """The steps as phases of lanes, in order. A shared stage (bootstrap, table) is a phase of
    its own; between two, each seed chain is a lane, and the eval of the fixed models one more.
    A lane's steps run in order; the lanes of a phase depend on nothing in each other."""
    phases: list[list[list[Step]]] = []
    lanes: dict[str, list[Step]] = {}
    for step in steps:
        if step.stage in SHARED_STAGES and not step.chain:
            if lanes:
                phases.append(list(lanes.values()))
                lanes = {}
            phases.append([[step]])
        else:
            lanes.setdefault(step.chain, []).append(step)
    if lanes:
        phases.append(list(lanes.values()))
    return phases


def core_shares(cores: list[int], parallel: int) -> list[str]:
    """vLLM CPU thread bindings (VLLM_CPU_OMP_THREADS_BIND) that give each of `parallel` lanes
    its own cores, so that side-by-side engines do not all compute on the same one."""
    size = max(1, len(cores) // parallel)
    shares = [cores[index * size : (index + 1) * size] or cores[-size:] for index in range(parallel)]
    return [",".join(str(core) for core in share) for share in shares]


def run_lanes(lanes: list[list[Step]], execute: Callable[[Step, int], None], parallel: int) -> None:
    """Run the lanes of one phase, at most `parallel` at once; `execute(step, slot)` runs a step,
    `slot` (0..parallel-1) being the running lane's own. After a failure no new step starts; the
    running ones finish, then the first error is raised."""
    if parallel <= 1 or len(lanes) <= 1:
        for lane in lanes:
            for step in lane:
                execute(step, 0)
        return
    failed = threading.Event()
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(parallel):
        slots.put(slot)

    def run_lane(lane: list[Step]) -> None:
        slot = slots.get()
        try:
            for step in lane:
                if failed.is_set():
                    return
                try:
                    execute(step, slot)
                except BaseException:
                    failed.set()
                    raise
        finally:
            slots.put(slot)

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = [pool.submit(run_lane, lane) for lane in lanes]
    errors = [future.exception() for future in futures if future.exception() is not None]
    if errors:
        raise errors[0]


def log_name(label: str) -> str:
    """A step label as a file name: `seed-0: train sft_verified` -> `seed-0.train-sft_verified.log`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label.replace(": ", ".")).strip("-") + ".log"


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def user_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return [item for item in HydraConfig.get().overrides.task if not item.startswith("stage=")]


def quote_override(value: str) -> str:
    """A value as a quoted Hydra override string (run directories of sweeps contain `=` and `,`)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pipeline_parallel(plain: dict[str, Any]) -> int:
    parallel = plain["pipeline"].get("parallel", 1)
    if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
        raise SkyDistillError(f"pipeline.parallel must be a whole number >= 1, got {parallel!r}")
    return parallel


def run(cfg: Any) -> dict[str, Any]:
    typed = stage_config(cfg, "pipeline")
    run_dir = Path(typed["paths"].run_dir)
    plain = to_container(cfg)
    parallel = pipeline_parallel(plain)
    # Every stage gets the resolved run directory, so that a sweep job's stages write where it does.
    overrides = [*user_overrides(), f"paths.run_dir={quote_override(str(run_dir))}"]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    shares = core_shares(cores, parallel)
    log_dir = run_dir / "logs" / "pipeline"
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def execute(step: Step, slot: int, side_by_side: bool) -> None:
        if step.outputs and all(completion(path) is not None for path in step.outputs):
            log.info("pipeline: %s is complete, skipping", step.label)
            timings[step.label] = 0.0
            return
        command = [sys.executable, "-m", "sky_distill.cli", step.stage, *overrides, *step.overrides]
        environ = dict(os.environ)
        # The same share of cores whether or not lanes run together: vLLM on CPU computes with
        # as many threads as it is given cores, and the thread count changes its numbers.
        environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", shares[slot])
        environ["SKY_DISTILL_NESTED"] = "1"  # steps print one line; the pipeline prints the one table
        step_start = time.perf_counter()
        if side_by_side:
            log_dir.mkdir(parents=True, exist_ok=True)
            log_file = log_dir / log_name(step.label)
            log.info("pipeline: %s started (log: %s)", step.label, log_file)
            with open(log_file, "a", encoding="utf-8") as handle:
                handle.write(f"$ {' '.join(command[2:])}\n")
                handle.flush()
                completed = subprocess.run(command, env=environ, stdout=handle, stderr=subprocess.STDOUT)
        else:
            log.info("pipeline: %s", " ".join(command[2:]))
            completed = subprocess.run(command, env=environ)
        timings[step.label] = round(time.perf_counter() - step_start, 1)
        if completed.returncode != 0:
            if side_by_side:
                log.error("pipeline: %s failed; the end of %s:\n%s", step.label, log_file, tail(log_file))
            raise StageFailedError(
                f"stage '{step.label}' failed (exit {completed.returncode}); fix it and re-run: complete stages are skipped"
            )
        if side_by_side:
            log.info("pipeline: %s done in %.0f s", step.label, timings[step.label])

    for lanes in plan_lanes(plan_steps(plain, run_dir)):
        side_by_side = parallel > 1 and len(lanes) > 1
        run_lanes(lanes, partial(execute, side_by_side=side_by_side), parallel)
    timings["total"] = round(time.perf_counter() - started, 1)
    result: dict[str, Any] = {"timings_s": timings}
    table_file = run_dir / "tables" / "results.md"
    if table_file.exists():
        result["table"] = table_file.read_text().strip()
    write_json_atomic(run_dir / "pipeline.json", {"timings_s": timings, "overrides": overrides, "parallel": parallel})
    return result
