"""Helpers of the recipe rehearsals (tests/test_recipes.py, tests/slurm/test_recipes_sbatch.py): the
recipes, synthetic rows in each Hub dataset's own columns, and the overrides that swap in the tiny models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import BENCHMARKS

RECIPES = ["sky_t1_32b", "sky_t1_7b", "r1_distill_7b"]
NUMINA = {"numina_amc_aime": "amc_aime", "numina_math": "math", "numina_olympiads": "olympiads"}
MATH_ROWS = 8  # per Numina source: one-digit additions, which the smoke run's tiny teacher sometimes gets right


def addition(index: int) -> tuple[str, str]:
    """The index-th of 81 distinct one-digit additions (deduplication keeps distinct problems)."""
    a, b = divmod(index * 2 % 81, 9)
    return f"Compute {a + 1} + {b + 1}.", str(a + b + 2)


def write_hub_copies(directory: Path) -> dict[str, int]:
    """Local copies of every mixture source, rows in the Hub's columns (with rows the filters drop);
    returns the problems each source should yield."""
    directory.mkdir(parents=True, exist_ok=True)
    expected, files = {}, {}
    start = 0
    for name, value in NUMINA.items():
        rows = []
        for index in range(start, start + MATH_ROWS):
            problem, answer = addition(index)
            rows.append({"problem": problem, "solution": f"Add them: \\boxed{{{answer}}}", "source": value})
        rows.insert(3, {"problem": "Compute 1 + 1.", "solution": "\\boxed{2}", "source": "cn_k12"})  # not selected
        files[name], expected[name] = rows, MATH_ROWS
        start += MATH_ROWS
    for name in ("apps", "taco_train", "taco_test"):
        io = json.dumps({"inputs": ["1 2\n", "5 7\n"], "outputs": ["3\n", "12\n"]})
        files[name] = [
            {"question": f"Read two integers and print their sum ({name} {index}).", "solutions": "[]",
             "input_output": io, "difficulty": "interview", "starter_code": ""}
            for index in range(2)
        ]  # fmt: skip
        expected[name] = 2
    still = []
    for index in range(start, start + 4):
        problem, answer = addition(index)
        still.append({"question": problem, "combined_text": f"... so \\boxed{{{answer}}}", "domain": "physics"})
    still.append({"question": "Compute 2 + 2.", "combined_text": "\\boxed{4}", "domain": "math"})  # not selected
    files["still2_science_puzzle"], expected["still2_science_puzzle"] = still, 4
    for name, rows in files.items():
        (directory / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return expected


def rehearsal_overrides(recipe: str, root: Path, models: Path, hub: Path) -> list[str]:
    """The recipe as written, but for the tiny models, their engine limits, 2 CPU ranks and tiny eval."""
    from tests.conftest import compose_config

    smoke = compose_config(["experiment=smoke", f"paths.models_dir={models}"], stage="pipeline")
    return [
        f"experiment={recipe}",
        f"paths.root={root}",
        # the models: the smoke run's tiny teacher and student (cached under their bootstrap
        # fingerprint), their engine and sequence limits
        "teacher=tiny",
        "student=tiny",
        f"paths.models_dir={models}",
        f"teacher.path={smoke.teacher.path}",
        f"student.path={smoke.student.path}",
        "teacher.engine.tensor_parallel_size=1",
        "teacher.engine.data_parallel_size=1",
        "generate.sampling.max_tokens=64",
        "train.max_seq_len=512",  # the tiny models' context
        "verify.sft.system_prompt='Think it through, then answer.'",  # Sky-T1's would fill half the context
        "train.precision=auto",
        "train.num_procs=2",
        "train.num_threads=1",
        "train.global_batch_size=4",  # examples a step: the rehearsal keeps only a dozen traces
        "train.save_every=2",
        "verify.workers=2",
        # the data: a few rows per source in the Hub's layout; eval on two local benchmarks, 2 problems each
        f"task.local_dir={hub}",
        f"paths.benchmarks_dir={BENCHMARKS}",
        "eval.benchmarks=[math500,amc23]",  # local copies; their first problems fit the tiny context
        "+eval.options.math500.limit=2",
        "+eval.options.amc23.limit=2",
        "eval.sampling.n=1",
        "eval.sampling.max_tokens=64",
        "pipeline.eval_models=[sft_verified]",
    ]


def sky_distill(*args: str, cwd: Path, timeout: float = 1200) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "sky_distill.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"sky-distill {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result
