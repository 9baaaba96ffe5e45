import itertools
import math
import random

import pytest

from sky_distill.evaluate.metrics import (
    avg_at_n,
    maj_at_k,
    majority_vote_correct,
    mean_and_standard_error,
    unbiased_pass_at_k,
)


def brute_force_pass_at_k(outcomes: list[bool], k: int) -> float:
    subsets = list(itertools.combinations(outcomes, k))
    return sum(any(subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 5, 3), (6, 2, 1), (6, 2, 3), (8, 3, 5), (10, 1, 10), (7, 6, 2)])
def test_unbiased_pass_at_k_equals_the_subset_average(n, c, k):
    outcomes = [True] * c + [False] * (n - c)
    assert unbiased_pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(outcomes, k))


def test_pass_at_1_is_the_fraction_correct_and_k_out_of_range_fails():
    assert unbiased_pass_at_k(10, 3, 1) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        unbiased_pass_at_k(4, 2, 5)


def test_standard_error():
    values = [random.Random(0).random() for _ in range(50)]
    mean, stderr = mean_and_standard_error(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 49)
    assert mean == pytest.approx(sum(values) / 50)
    assert stderr == pytest.approx(sd / math.sqrt(50))
    assert avg_at_n([[True, False], [True, True]]) == (pytest.approx(0.75), pytest.approx(0.25))


def test_majority_vote():
    assert majority_vote_correct(["4", "5", "4", None], [True, False, True, False])
    assert not majority_vote_correct(["5", "5", "4"], [False, False, True])
    assert not majority_vote_correct([None, None], [False, False])
    assert maj_at_k([["1", "2", "2"], ["3", "3", "3"]], [[True, False, False], [True, True, True]], 3) == (
        pytest.approx(0.5),
        pytest.approx(0.5),
    )


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_problems():
    from sky_distill.evaluate.metrics import bootstrap_interval

    rng = random.Random(1)
    small = [float(rng.random() < 0.6) for _ in range(40)]
    large = [float(rng.random() < 0.6) for _ in range(1000)]
    low, high = bootstrap_interval(small, resamples=2000, seed=0)
    assert low < sum(small) / 40 < high
    wide, narrow = high - low, (lambda lh: lh[1] - lh[0])(bootstrap_interval(large, resamples=2000, seed=0))
    assert narrow < wide / 3
    # ~95% interval of a proportion: close to +-1.96 standard errors.
    mean, stderr = mean_and_standard_error(large)
    lo, hi = bootstrap_interval(large, resamples=4000, seed=0)
    assert lo == pytest.approx(mean - 1.96 * stderr, abs=0.01) and hi == pytest.approx(mean + 1.96 * stderr, abs=0.01)
    assert bootstrap_interval(small, resamples=500, seed=3) == bootstrap_interval(small, resamples=500, seed=3)


def test_mcnemar_exact_p_values():
    from sky_distill.evaluate.metrics import mcnemar_exact_p

    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(5, 5) == 1.0
    # 10 discordant pairs all one way: 2 * 0.5**10
    assert mcnemar_exact_p(10, 0) == pytest.approx(2 / 1024)
    # two-sided binomial tail: P(X <= 2 | n=12) * 2
    assert mcnemar_exact_p(2, 10) == pytest.approx(2 * sum(math.comb(12, i) for i in range(3)) / 4096)


def test_paired_difference_sees_a_consistent_gap_that_unpaired_errors_would_hide():
    from sky_distill.evaluate.metrics import paired_difference

    rng = random.Random(0)
    difficulty = [0.9 * rng.random() for _ in range(200)]
    a = [d + 0.05 for d in difficulty]  # A is 5 points better on every problem
    b = difficulty
    result = paired_difference(a, b, resamples=1000, seed=0)
    assert result["difference"] == pytest.approx(0.05)
    assert result["ci_low"] > 0.04 and result["p_bootstrap"] < 0.01
    _, unpaired_a = mean_and_standard_error(a)
    assert result["stderr"] < unpaired_a / 5
    same = paired_difference(b, b, resamples=200, seed=0)
    assert same["difference"] == 0 and same["p_bootstrap"] == 1.0
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 0.0])


def test_pass_at_k_summary_matches_the_estimator_on_known_cases():
    from sky_distill.evaluate.scoring import summarize
    from sky_distill.records import EvalSample

    outcomes = {"p1": [True, False, False, False], "p2": [True, True, False, True], "p3": [False] * 4}
    samples = [
        EvalSample(
            benchmark="b", problem_id=pid, sample_index=i, model="m", response="", extracted=str(int(ok)),
            correct=ok, status="correct" if ok else "incorrect", completion_tokens=10 * (i + 1),
            finish_reason="length" if i == 3 else "stop", truncated=i == 3,
        )
        for pid, oks in outcomes.items()
        for i, ok in enumerate(oks)
    ]  # fmt: skip
    summary = summarize(samples, "b", ks=(1, 2, 4), resamples=200)
    for k in (1, 2, 4):
        expected = sum(unbiased_pass_at_k(4, sum(o), k) for o in outcomes.values()) / 3
        assert summary[f"eval/b/pass@{k}"] == pytest.approx(expected)
        assert summary[f"eval/b/pass@{k}"] == pytest.approx(
            sum(brute_force_pass_at_k(o, k) for o in outcomes.values()) / 3
        )
    assert summary["eval/b/avg@n"] == pytest.approx((0.25 + 0.75 + 0) / 3)
    assert summary["eval/b/maj@4"] == pytest.approx(1 / 3)  # only p2's majority answer is right
    assert summary["eval/b/truncation_rate"] == 0.25
    assert summary["eval/b/mean_tokens"] == 25 and summary["eval/b/median_tokens"] == 25
    assert summary["n"] == 4 and summary["problems"] == 3
