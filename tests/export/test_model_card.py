"""The model card states the base model, data fingerprint, recipe, curve and the eval table with intervals."""

from __future__ import annotations

from sky_distill.config import TrainConfig
from sky_distill.evaluate.scoring import summarize
from sky_distill.export.model_card import curve_summary, model_card
from tests.evaluate.test_harness_layout import sample


def test_the_card_holds_the_curve_and_the_eval_interval():
    train = TrainConfig(name="sft", init="Qwen/Qwen2.5-7B-Instruct", data="verified", learning_rate=2e-5)
    job = {"train": train.model_dump(), "zero": {"stage": 3}, "provenance": {"inputs": {"data": "abc123"}}}
    metrics = [{"step": 10, "train/loss": 2.0}, {"step": 20, "train/loss": 1.2}, {"step": 30, "train/loss": 1.4}]
    samples = [sample(p, i, correct=(p + i) % 3 != 0) for p in range(6) for i in range(2)]
    summary = {**summarize(samples, "math500", ks=(1,), resamples=200), "model": "sft", "benchmark": "math500"}
    card = model_card("sft", job, metrics, [summary], None, dataset_repo="me/data")
    assert curve_summary(metrics) == {
        "steps": 30, "first_step": 10, "first_loss": 2.0, "last_loss": 1.4, "lowest_loss": 1.2, "lowest_at": 20,
    }  # fmt: skip
    assert "base_model: Qwen/Qwen2.5-7B-Instruct" in card and "datasets:\n- me/data" in card
    assert "- train.data: `verified`; fingerprint `abc123`" in card
    assert "| learning_rate | 2e-05 |" in card and "| deepspeed zero stage | 3 |" in card and "data_format" not in card
    assert "30 steps; loss 2.0000 at step 10, 1.4000 at step 30, lowest 1.2000 (step 20)" in card
    low, high = summary["eval/math500/avg@n_ci_low"], summary["eval/math500/avg@n_ci_high"]
    mean = summary["eval/math500/avg@n"]
    assert f"| math500 | 2 | 6 | {mean:.1%} | [{low:.1%}, {high:.1%}] |" in card
