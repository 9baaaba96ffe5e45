"""batch_unit=examples: a step takes global_batch_size examples, packed into the same number of rows."""

from __future__ import annotations

import random

import pytest

from sky_distill.config import TrainConfig
from sky_distill.train.batching import ExampleSchedule, best_fit_decreasing, pack_into_bins, total_steps
from sky_distill.train.data import EncodedExample, pack_examples
from sky_distill.train.schedule import plan_batches


def trace_lengths(count: int, seed: int = 0) -> list[int]:
    """Lengths like Sky-T1's traces: mostly 2K-8K tokens, a long tail up to the 16K cut."""
    generator = random.Random(seed)
    return [min(16384, int(generator.lognormvariate(8.4, 0.5))) for _ in range(count)]


def schedule(lengths, per_step=96, world=8, micro=1, steps=None, seed=0) -> ExampleSchedule:
    steps = steps or total_steps(len(lengths), per_step, 3, None)
    return ExampleSchedule(lengths, per_step, 16384, micro, world, seed, steps)


def test_each_step_takes_its_examples_and_every_example_comes_once_per_epoch():
    lengths = trace_lengths(960)
    plan = schedule(lengths)
    assert plan.steps_per_epoch == 10 and plan.num_steps == 30
    for epoch in range(3):
        seen = []
        for step in range(epoch * 10, epoch * 10 + 10):
            rows = plan.step_rows(step)
            assert len(rows) == plan.rows_per_step  # fixed: DeepSpeed's accumulation does not change
            examples = [index for row in rows for index in plan.bins[row]]
            assert sorted(examples) == sorted(plan.step_examples(step)) and len(examples) == 96
            assert all(sum(lengths[i] for i in plan.bins[row]) <= 16384 for row in rows)
            per_rank = [sum(plan.micro_batches(step, rank), []) for rank in range(8)]
            assert sorted(sum(per_rank, [])) == sorted(rows) and {len(r) for r in per_rank} == {rows_per_rank(plan)}
            seen += examples
        assert sorted(seen) == list(range(960))
    assert plan.step_examples(0) != plan.step_examples(10)  # each epoch reshuffles
    assert plan.rows_per_step % 8 == 0 and plan.rows_per_step < 96  # packed: ~3 traces a row
    assert plan.epoch(30) == 3.0


def rows_per_rank(plan: ExampleSchedule) -> int:
    return plan.rows_per_step // plan.world_size


def test_the_schedule_is_a_pure_function_of_seed_and_step_so_a_resume_matches():
    lengths = trace_lengths(500)
    first, again = schedule(lengths, seed=3), schedule(lengths, seed=3)
    assert first.bins == again.bins and first.plan == again.plan  # what a resumed run (or another rank) computes
    assert schedule(lengths, seed=4).bins != first.bins


def test_the_published_recipe_at_full_size_is_96_examples_and_about_530_steps():
    assert total_steps(17_000, 96, 3, None) == 534
    packed_rows = len(best_fit_decreasing(trace_lengths(17_000), 16384))
    assert total_steps(packed_rows, 96, 3, None) < 200  # what counting rows did: ~3x fewer, larger steps


def test_uneven_bins_fall_back_to_splitting_and_impossible_ones_name_the_sizes():
    assert [len(row) for row in pack_into_bins([10, 10, 10, 10], 40, 2)] == [2, 2]  # balanced loads
    bins = pack_into_bins([30, 30, 5, 5, 5, 5], 40, 4)  # worst-fit runs out of room; best-fit then split
    assert len(bins) == 4 and all(bins) and sorted(sum(bins, [])) == list(range(6))
    assert all(sum([30, 30, 5, 5, 5, 5][i] for i in row) <= 40 for row in bins)
    with pytest.raises(ValueError, match="need 3 rows of 40 tokens, more than 2"):
        pack_into_bins([30, 30, 30], 40, 2)
    with pytest.raises(ValueError, match="fewer than micro_batch_size x world_size"):
        ExampleSchedule([10] * 8, 4, 40, 1, 8, 0, 2)


def test_packing_rows_uses_the_same_best_fit_as_before():
    lengths = [7, 3, 9, 1, 5, 5, 2]
    rows = pack_examples([EncodedExample([0] * n, [0] * n) for n in lengths], 10)
    assert [[len(example) for example in row.examples] for row in rows] == [
        [lengths[i] for i in row] for row in best_fit_decreasing(lengths, 10)
    ]
    assert [row.length for row in rows] == [10, 10, 10, 2]


def test_plan_batches_reads_batch_unit():
    examples = [EncodedExample([0] * n, [0] * n) for n in trace_lengths(200)]
    base = dict(name="t", init="m", global_batch_size=24, max_seq_len=16384, epochs=1)
    by_rows = plan_batches(examples, TrainConfig(**base, batch_unit="rows"), world_size=2)
    by_examples = plan_batches(examples, TrainConfig(**base, batch_unit="examples"), world_size=2)
    assert by_rows.plan.global_batch_size == 24 and by_rows.num_steps == -(-len(by_rows.rows) // 24)
    assert by_examples.num_steps == 9  # ceil(200 / 24)
    assert by_examples.plan.global_batch_size < 24 and len(by_examples.rows) == 9 * by_examples.plan.global_batch_size


@pytest.mark.slow
def test_deepspeed_steps_on_examples_train_the_same_curve_on_one_or_two_ranks(tiny_model_dir, tmp_path):
    """16 examples a step, packed into rows per step: 2 ranks x 1 row or 1 rank x 2 rows per micro batch
    give the same loss (normalised by the step's target tokens), and the summary names the unit."""
    from sky_distill.records import Message, SFTExample, write_jsonl
    from sky_distill.runs import completion
    from sky_distill.tasks.arithmetic import ArithmeticSpec, make_problems, reference_response
    from sky_distill.tracking import read_metrics
    from sky_distill.train.launch import launch
    from tests.train.test_deepspeed import make_job

    sft_file = tmp_path / "verified.jsonl"
    problems = make_problems(ArithmeticSpec(), "train", 40)
    write_jsonl(
        sft_file,
        [
            SFTExample(
                messages=[
                    Message(role="user", content=p.problem),
                    Message(role="assistant", content=reference_response(p, "worked")),
                ]
            )
            for p in problems
        ],
    )
    curves = {}
    for procs, micro in ((2, 1), (1, 2)):
        extra = [
            "train.batch_unit=examples",
            "train.global_batch_size=16",
            "train.max_steps=5",
            "train.save_every=null",
            f"train.num_procs={procs}",
            f"train.micro_batch_size={micro}",
        ]
        out = tmp_path / f"ranks{procs}"
        launch(make_job(tiny_model_dir, sft_file, out, "zero2", extra=extra))
        summary = completion(out)
        assert summary["batch_unit"] == "examples" and summary["examples_per_step"] == 16 and summary["steps"] == 5
        assert summary["global_batch_size"] % (procs * micro) == 0 and summary["global_batch_size"] < 16  # packed rows
        curves[procs] = [row["train/loss"] for row in read_metrics(out / "metrics.jsonl")]
    assert len(curves[2]) == 5
    assert curves[2] == pytest.approx(curves[1], rel=1e-4)
