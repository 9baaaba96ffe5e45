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
