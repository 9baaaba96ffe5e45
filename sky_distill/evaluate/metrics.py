"""Accuracy metrics over n samples per problem, each with an uncertainty. Pure.

avg@n   mean over problems of the fraction of correct samples (pass@1 estimated from n)
pass@k  the unbiased estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k), averaged
maj@k   whether the most common answer among the first k samples is correct
Standard errors treat problems as the sampling unit (the spread of per-problem scores).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def unbiased_pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n is correct."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if k > n:
        raise ValueError(f"k={k} exceeds the n={n} samples drawn")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def mean_and_standard_error(values: Sequence[float]) -> tuple[float, float]:
    """The mean and its standard error (sample standard deviation / sqrt(count))."""
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    variance = sum((value - mean) ** 2 for value in values) / (len(values) - 1)
    return mean, math.sqrt(variance / len(values))


def avg_at_n(correct_per_problem: Sequence[Sequence[bool]]) -> tuple[float, float]:
    """avg@n with standard error over problems."""
    return mean_and_standard_error([sum(samples) / len(samples) for samples in correct_per_problem if samples])


def pass_at_k(correct_per_problem: Sequence[Sequence[bool]], k: int) -> tuple[float, float]:
    return mean_and_standard_error([unbiased_pass_at_k(len(s), sum(s), k) for s in correct_per_problem if s])


def majority_vote_correct(answers: Sequence[str | None], correct: Sequence[bool]) -> bool:
    """Whether the most frequent non-empty answer (ties: first seen) is a correct one."""
    counts = Counter(answer for answer in answers if answer is not None)
    if not counts:
        return False
    top = max(counts.values())
    winner = next(answer for answer in answers if answer is not None and counts[answer] == top)
    return any(ok for answer, ok in zip(answers, correct) if answer == winner)


def maj_at_k(
    answers_per_problem: Sequence[Sequence[str | None]], correct_per_problem: Sequence[Sequence[bool]], k: int
) -> tuple[float, float]:
    scores = [
        float(majority_vote_correct(answers[:k], correct[:k]))
        for answers, correct in zip(answers_per_problem, correct_per_problem)
        if correct
    ]
    return mean_and_standard_error(scores)


def bootstrap_interval(
    values: Sequence[float], resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling problems with replacement."""
    import numpy as np

    if not values:
        return float("nan"), float("nan")
    data = np.asarray(values, dtype=float)
    if resamples <= 0 or len(data) < 2:
        return float(data.mean()), float(data.mean())
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def mcnemar_exact_p(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar test: discordant pairs against a fair coin (binomial)."""
    discordant = a_only + b_only
    if discordant == 0:
        return 1.0
    low = min(a_only, b_only)
    tail = sum(math.comb(discordant, i) for i in range(low + 1)) / 2**discordant
    return min(1.0, 2 * tail)


def paired_difference(
    a: Sequence[float], b: Sequence[float], resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Mean of a - b over paired problems, its standard error, a paired-bootstrap interval and p-value."""
    import numpy as np

    if len(a) != len(b):
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    differences = [x - y for x, y in zip(a, b)]
    mean, stderr = mean_and_standard_error(differences)
    low, high = bootstrap_interval(differences, resamples, confidence, seed)
    p_value = float("nan")
    if differences and resamples > 0:
        data = np.asarray(differences, dtype=float)
        rng = np.random.default_rng(seed)
        means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
        # Two-sided: how often the resampled difference lands on the other side of zero.
        p_value = min(1.0, 2 * min(float((means <= 0).mean()), float((means >= 0).mean())))
    return {"difference": mean, "stderr": stderr, "ci_low": low, "ci_high": high, "p_bootstrap": p_value}
