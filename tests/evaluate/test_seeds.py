"""Across-seed statistics: means, between-seed spread, the two-level bootstrap and paired differences."""

import numpy as np
import pytest

from sky_distill.evaluate.seeds import replicate_means, replicate_weights, score_matrix, seed_stats


def test_the_mean_and_the_per_seed_means_are_plain_averages():
    scores = np.array([[1.0, 0.0, 0.5, 0.5], [1.0, 1.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]])
    stats = seed_stats(scores, replicate_weights(3, 4, 500, seed=0))
    assert stats.mean == pytest.approx(scores.mean())
    assert stats.seed_means == pytest.approx((0.5, 0.75, 0.25))
    assert stats.seed_sd == pytest.approx(np.std([0.5, 0.75, 0.25], ddof=1))
    assert stats.ci_low <= stats.mean <= stats.ci_high


def test_replicates_with_all_counts_one_give_the_plain_mean():
    scores = np.random.default_rng(0).random((3, 7))
    ones = (np.ones((1, 3)), np.ones((1, 7)))
    assert replicate_means(scores, ones)[0] == pytest.approx(scores.mean())
    seeds, problems = replicate_weights(3, 7, 100, seed=1)
    assert (seeds.sum(axis=1) == 3).all() and (problems.sum(axis=1) == 7).all()


def test_between_seed_disagreement_widens_the_interval():
    rng = np.random.default_rng(0)
    base = rng.random((1, 200)).repeat(3, axis=0)
    agreeing = base
    disagreeing = base + np.array([[-0.1], [0.0], [0.1]])  # the same problems, seeds shifted
    weights = replicate_weights(3, 200, 2000, seed=0)
    narrow, wide = seed_stats(agreeing, weights), seed_stats(disagreeing, weights)
    assert narrow.mean == pytest.approx(wide.mean)
    assert (wide.ci_high - wide.ci_low) > 2 * (narrow.ci_high - narrow.ci_low)
    assert wide.seed_sd == pytest.approx(0.1)


def test_a_real_difference_is_significant_and_noise_is_not():
    rng = np.random.default_rng(1)
    weights = replicate_weights(3, 300, 2000, seed=0)
    b = rng.integers(0, 2, (3, 300)).astype(float)
    better = np.clip(b + (rng.random((3, 300)) < 0.3) * (1 - b), 0, 1)  # a fixes ~30% of b's misses
    real = seed_stats(better - b, weights, test_zero=True)
    assert real.ci_low > 0 and real.p_value < 0.01
    noise = seed_stats(rng.integers(0, 2, (3, 300)) - rng.integers(0, 2, (3, 300)), weights, test_zero=True)
    assert noise.ci_low < 0 < noise.ci_high and noise.p_value > 0.05


def test_the_seeds_must_answer_the_same_problems():
    matrix, problems = score_matrix([{"p1": 1.0, "p2": 0.0}, {"p2": 0.5, "p1": 0.5}], "m on b")
    assert problems == ["p1", "p2"] and matrix.tolist() == [[1.0, 0.0], [0.5, 0.5]]
    with pytest.raises(ValueError, match="m on b: seed 1 answered other problems"):
        score_matrix([{"p1": 1.0}, {"p2": 0.0}], "m on b")
    with pytest.raises(ValueError, match="non-empty"):
        seed_stats(np.zeros((0, 3)), replicate_weights(1, 3, 10, 0))
