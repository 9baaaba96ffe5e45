"""The local pipeline's lanes: which steps may run side by side, and the runner that does it."""

import threading
import time

import pytest

from sky_distill.pipeline import Step, core_shares, log_name, plan_lanes, run_lanes


def step(label: str, stage: str, chain: str = "") -> Step:
    return Step(label, stage, (), (), chain)


def test_shared_stages_are_phases_of_their_own_and_each_chain_is_a_lane():
    steps = [
        step("bootstrap", "bootstrap"),
        step("seed-0: generate", "generate", "seed-0"),
        step("seed-0: train a", "train", "seed-0"),
        step("seed-1: generate", "generate", "seed-1"),
        step("seed-1: train a", "train", "seed-1"),
        step("eval", "eval"),  # the fixed models, once
        step("table", "table"),
    ]
    phases = plan_lanes(steps)
    labels = [[[s.label for s in lane] for lane in phase] for phase in phases]
    assert labels == [
        [["bootstrap"]],
        [["seed-0: generate", "seed-0: train a"], ["seed-1: generate", "seed-1: train a"], ["eval"]],
        [["table"]],
    ]


def test_a_run_without_seeds_is_one_lane_in_order():
    steps = [step("bootstrap", "bootstrap"), step("generate", "generate"), step("eval", "eval"), step("table", "table")]
    assert [[[s.label for s in lane] for lane in phase] for phase in plan_lanes(steps)] == [
        [["bootstrap"]],
        [["generate", "eval"]],
        [["table"]],
    ]


def test_core_shares_split_the_cores_between_lanes():
    assert core_shares([0, 1], 2) == ["0", "1"]
    assert core_shares([0, 1, 2, 3, 4, 5, 6, 7], 2) == ["0,1,2,3", "4,5,6,7"]
    assert core_shares([0], 2) == ["0", "0"]  # fewer cores than lanes: they share


def test_lanes_run_side_by_side_in_order_within_each_lane():
    phases = plan_lanes([step(f"seed-{s}: {i}", "x", f"seed-{s}") for s in range(3) for i in range(3)])
    events, lock = [], threading.Lock()
    running, most = set(), [0]

    def execute(item: Step, slot: int) -> None:
        with lock:
            assert slot not in running, "two running lanes were given the same slot"
            running.add(slot)
            most[0] = max(most[0], len(running))
        time.sleep(0.05)
        with lock:
            running.discard(slot)
            events.append(item.label)

    run_lanes(phases[0], execute, parallel=2)
    assert sorted(events) == sorted(s.label for lane in phases[0] for s in lane)
    for seed in range(3):
        mine = [e for e in events if e.startswith(f"seed-{seed}:")]
        assert mine == [f"seed-{seed}: {i}" for i in range(3)]
    assert most[0] == 2


def test_after_a_failure_no_new_step_starts_and_the_error_is_raised():
    phases = plan_lanes([step(f"seed-{s}: {i}", "x", f"seed-{s}") for s in range(3) for i in range(3)])
    done = []

    def execute(item: Step, slot: int) -> None:
        if item.label == "seed-0: 0":
            raise RuntimeError("boom")
        time.sleep(0.1)
        done.append(item.label)

    with pytest.raises(RuntimeError, match="boom"):
        run_lanes(phases[0], execute, parallel=2)
    assert not any(label.startswith("seed-0") for label in done)
    assert not any(label.startswith("seed-2") for label in done)  # never started: a lane failed first
    assert len(done) <= 1  # seed-1's running step finishes; its next one does not start


def test_step_logs_have_plain_file_names():
    assert log_name("seed-0: train sft_verified") == "seed-0.train-sft_verified.log"
    assert log_name("eval") == "eval.log"
