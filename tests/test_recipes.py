"""Dress rehearsal of the real recipes: `sky_t1_32b`, `sky_t1_7b` and `r1_distill_7b` run end to end
as written, every one of their 16 generation shards included, with only the models swapped for the
tiny ones (and the engine settings those need) and the data cut to a few synthetic rows per source,
written in each Hub dataset's own columns. Also: the plan of each recipe at full size is the
published one, and the local pipeline's shards give the traces one shard gives.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sky_distill.config import stage_config
from sky_distill.plan import format_plan, recipe_plan
from tests.conftest import BENCHMARKS, compose_config

RECIPES = ["sky_t1_32b", "sky_t1_7b", "r1_distill_7b"]
NUMINA = {"numina_amc_aime": "amc_aime", "numina_math": "math", "numina_olympiads": "olympiads"}
MATH_ROWS = 8  # per Numina source: additions of two digits, which the smoke run's tiny teacher half knows


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
    return [
        f"experiment={recipe}",
        f"paths.root={root}",
        # the models: the smoke run's tiny teacher and student, their engine and sequence limits
        "teacher=tiny",
        "student=tiny",
        f"paths.models_dir={models}",
        "teacher.engine.tensor_parallel_size=1",
        "teacher.engine.data_parallel_size=1",
        "generate.sampling.max_tokens=64",
        "train.max_seq_len=512",  # the tiny models' context
        "verify.sft.system_prompt='Think it through, then answer.'",  # Sky-T1's would fill half the context
        "train.precision=auto",
        "train.num_procs=2",
        "train.num_threads=1",
        "train.global_batch_size=4",  # examples a step: the rehearsal keeps only a dozen traces
        "train.save_every=4",
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


def full_size_plan(recipe: str, *overrides: str) -> dict:
    cfg = compose_config([f"experiment={recipe}", "paths.root=/nonexistent", *overrides], stage="plan")
    return recipe_plan(stage_config(cfg, "plan"), Path("/nonexistent/runs") / recipe)


# --- fast: the plans at full size ---------------------------------------------------------------


@pytest.mark.parametrize("recipe", RECIPES)
def test_the_full_size_plan_is_the_published_recipe(recipe):
    plan = full_size_plan(recipe)
    train = plan["train"]
    assert plan["traces_kept"] == 17_000 and not plan["traces_measured"]
    assert train["batch_unit"] == "examples" and train["examples_per_step"] == 96
    assert (train["epochs"], train["max_seq_len"], train["learning_rate"]) == (3, 16384, 1e-5)
    assert train["steps_per_epoch"] == 178 and train["optimizer_steps"] == 534  # "~530 steps" at 17K traces
    assert plan["generate"]["shards"] == 16 and plan["generate"]["logprobs"] is None
    assert plan["generate"]["samples_per_problem"] == 1
    sources = [row["source"] for row in plan["sources"]]
    assert sources[:3] == list(NUMINA) and "still2_science_puzzle" in sources and "apps" in sources
    print(format_plan(plan, recipe))


def test_the_recipes_lay_out_their_teachers_for_the_machine():
    assert full_size_plan("sky_t1_32b")["generate"] | {} == full_size_plan("sky_t1_7b")["generate"]
    layout = full_size_plan("sky_t1_32b")["generate"]
    assert (layout["tensor_parallel_size"], layout["data_parallel_size"]) == (4, 2)  # 8 GPUs per shard
    served = full_size_plan("r1_distill_7b", "teacher=deepseek_r1_served")["generate"]["served"]
    assert served == {"nodes": 2, "tensor_parallel_size": 8, "pipeline_parallel_size": 2}


def test_the_sft_data_and_eval_prompt_the_student_the_same_way():
    for recipe in RECIPES:
        groups = stage_config(compose_config([f"experiment={recipe}"], stage="pipeline"), "pipeline")
        assert groups["verify"].sft.format == "sky_t1"
        assert groups["verify"].sft.system_prompt and "<|begin_of_thought|>" in groups["verify"].sft.system_prompt
        assert groups["student"].system_prompt == groups["verify"].sft.system_prompt


def test_the_local_pipeline_runs_every_shard_and_slurm_an_array_of_them(tmp_path):
    from sky_distill.config import to_container
    from sky_distill.pipeline import plan_steps
    from tests.slurm.test_launching import plan

    cfg = compose_config(["experiment=sky_t1_32b", f"paths.root={tmp_path}"], stage="pipeline")
    steps = plan_steps(to_container(cfg), tmp_path)
    assert steps[0].stage == "generate" and steps[0].overrides == ("generate.all_shards=true",)
    jobs, _ = plan(["experiment=sky_t1_32b", f"paths.root={tmp_path}"])
    generate = next(job for job in jobs if job.label == "generate")
    assert generate.array == 16 and "generate.all_shards=true" not in generate.overrides
    assert generate.sbatch == ["--gpus-per-node=8"]  # TP 4 x DP 2
    assert [job.label for job in jobs][:3] == ["generate", "merge", "verify"]


# --- slow: the rehearsal --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub_copies(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    directory = tmp_path_factory.mktemp("hub")
    return directory, write_hub_copies(directory)


@pytest.fixture(scope="module")
def rehearsals(smoke_models, hub_copies, tmp_path_factory):
    """Each recipe run by `sky-distill pipeline`, then planned by `sky-distill plan` (measured)."""
    hub, _ = hub_copies
    runs = {}
    for recipe in RECIPES:
        root = tmp_path_factory.mktemp(recipe)
        overrides = rehearsal_overrides(recipe, root, smoke_models, hub)
        pipeline = sky_distill("pipeline", *overrides, cwd=root)
        printed = sky_distill("plan", *overrides, cwd=root).stdout
        print(printed)
        run_dir = root / "runs" / recipe
        runs[recipe] = (run_dir, overrides, json.loads((run_dir / "plan.json").read_text()), pipeline.stdout)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_the_recipe_runs_end_to_end_on_every_shard(recipe, rehearsals, hub_copies):
    run_dir, _, plan, stdout = rehearsals[recipe]
    _, expected = hub_copies
    sources = {row["source"]: row for row in plan["sources"]}
    if recipe == "r1_distill_7b":
        expected = {name: count for name, count in expected.items() if name != "taco_test"}  # Stratos: TACO train only
    assert {name: row["problems"] for name, row in sources.items()} == expected
    shards = sorted((run_dir / "generate" / "shards").glob("shard-?????-of-00016.summary.json"))
    assert len(shards) == 16  # every shard generated (some hold no problem), then merged
    traces = (run_dir / "generate" / "traces.jsonl").read_text().splitlines()
    assert len(traces) == sum(expected.values())  # n = 1
    assert all("topk" not in json.loads(line) for line in traces)
    kept = plan["traces_kept"]
    assert plan["traces_measured"] and 0 < kept < len(traces)
    assert sum(row["traces_kept"] for row in sources.values()) == kept
    assert all(sources[name]["traces_kept"] == 0 for name in ("apps", "taco_train"))  # tiny models write no code
    train = plan["train"]
    assert train["examples_per_step"] == 4 and train["optimizer_steps"] == 3 * -(-kept // 4)
    measured = train["measured"]
    assert measured["steps"] == train["optimizer_steps"] and measured["world_size"] == 2
    assert measured["rows_per_step"] % 2 == 0 and measured["rows_per_step"] <= 4
    complete = json.loads((run_dir / "train" / "sft_verified" / "COMPLETE.json").read_text())
    assert complete["batch_unit"] == "examples" and complete["train/data/kept"] == kept
    sft = [json.loads(line) for line in (run_dir / "verify" / "sft" / "verified.jsonl").read_text().splitlines()]
    assert all(example["messages"][0]["role"] == "system" for example in sft)
    assert all(example["messages"][0]["content"] == "Think it through, then answer." for example in sft)
    assert all("<|begin_of_thought|>" in example["messages"][-1]["content"] for example in sft)
    for benchmark in ("math500", "amc23"):
        summary = json.loads((run_dir / "eval" / "sft_verified" / benchmark / "summary.json").read_text())
        assert summary["samples"] == 2
    assert (run_dir / "tables" / "results.md").exists() and "sft_verified" in stdout
