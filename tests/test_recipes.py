"""Dress rehearsal of the real recipes: `sky_t1_32b`, `sky_t1_7b` and `r1_distill_7b` run end to end
as written, every one of their 16 generation shards included, with only the models swapped for the
tiny ones (and the engine settings those need) and the data cut to a few synthetic rows per source,
written in each Hub dataset's own columns. Also: the plan of each recipe at full size is the
published one, and the local pipeline's shards give the traces one shard gives.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sky_distill.config import stage_config
from sky_distill.plan import format_plan, recipe_plan
from tests.conftest import compose_config
from tests.recipes import NUMINA, RECIPES, sky_distill


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


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_the_recipe_runs_end_to_end_on_every_shard(recipe, recipe_rehearsals, hub_copies):
    run_dir, _, plan, stdout = recipe_rehearsals[recipe]
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


@pytest.mark.slow
def test_the_smoke_pipeline_on_three_shards_gives_the_traces_of_one_shard(smoke_models, tmp_path):
    models = f"paths.models_dir={smoke_models}"
    sky_distill("pipeline", "experiment=smoke", models, f"paths.root={tmp_path / 'three'}", "generate.shard_count=3",
                "pipeline.stages=[generate,verify]", cwd=tmp_path)  # fmt: skip
    sky_distill("generate", "experiment=smoke", models, f"paths.root={tmp_path / 'one'}", cwd=tmp_path)
    three, one = tmp_path / "three" / "runs" / "smoke", tmp_path / "one" / "runs" / "smoke"
    assert len(list((three / "generate" / "shards").glob("shard-?????-of-00003.summary.json"))) == 3
    traces = [without_time(line) for line in (three / "generate" / "traces.jsonl").read_text().splitlines()]
    assert len(traces) == 32 * 2
    assert traces == [without_time(line) for line in (one / "generate" / "traces.jsonl").read_text().splitlines()]
    assert (three / "verify" / "COMPLETE.json").exists()  # verify found the merged generation


def without_time(line: str) -> dict:
    return {key: value for key, value in json.loads(line).items() if key != "elapsed_s"}
