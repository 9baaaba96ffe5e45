"""Results across seeds: means, between-seed spread and a hierarchical bootstrap. Pure numpy.

A score is a matrix `[seed, problem]` of per-problem accuracies (the fraction of a problem's
samples that are correct), the same problems in every seed. The interval resamples at both
levels of the experiment (Hochlehnert et al. 2025; Miller 2024, "Adding error bars to evals"):
seeds with replacement, then problems with replacement, once per replicate; a paired
difference uses the same seeds and problems for both models, so it keeps the pairing.

The seed level matters: with 3 seeds the bootstrap sees only 10 distinct seed multisets, so
the interval is wide when seeds disagree, which is the point. A p-value is two-sided: twice
the share of replicates on the far side of zero (at least one replicate's worth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SeedStats:
    mean: float  # over seeds and problems
    seed_means: tuple[float, ...]  # one per seed
    seed_sd: float  # between-seed standard deviation of the seed means (ddof 1; 0 for one seed)
    ci_low: float
    ci_high: float
    p_value: float | None = None  # for a difference: H0 "no difference"

    def as_dict(self) -> dict[str, object]:
        return {
            "mean": self.mean,
            "seed_means": list(self.seed_means),
            "seed_sd": self.seed_sd,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_value": self.p_value,
        }


def replicate_weights(num_seeds: int, num_problems: int, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial counts `[resamples, seeds]` and `[resamples, problems]`: one two-level resample each."""
    rng = np.random.default_rng(seed)
    seed_counts = rng.multinomial(num_seeds, [1 / num_seeds] * num_seeds, size=resamples)
    problem_counts = rng.multinomial(num_problems, [1 / num_problems] * num_problems, size=resamples)
    return seed_counts.astype(float), problem_counts.astype(float)


def replicate_means(scores: np.ndarray, weights: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The mean of `scores [seeds, problems]` under each replicate's seed and problem counts."""
    seed_counts, problem_counts = weights
    total = seed_counts.sum(axis=1) * problem_counts.sum(axis=1)
    return np.einsum("bs,sp,bp->b", seed_counts, scores, problem_counts) / total


def seed_stats(
    scores: np.ndarray, weights: tuple[np.ndarray, np.ndarray], confidence: float = 0.95, test_zero: bool = False
) -> SeedStats:
    """Mean, per-seed means, between-seed SD and the percentile interval of `scores [seeds, problems]`."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"scores must be a non-empty [seeds, problems] matrix, got shape {scores.shape}")
    seed_means = scores.mean(axis=1)
    spread = float(seed_means.std(ddof=1)) if len(seed_means) > 1 else 0.0
    replicates = replicate_means(scores, weights)
    tail = (1 - confidence) / 2
    p_value = None
    if test_zero:
        far_side = min(float((replicates <= 0).mean()), float((replicates >= 0).mean()))
        p_value = min(1.0, max(2 * far_side, 1 / len(replicates)))
    return SeedStats(
        mean=float(scores.mean()),
        seed_means=tuple(float(value) for value in seed_means),
        seed_sd=spread,
        ci_low=float(np.quantile(replicates, tail)),
        ci_high=float(np.quantile(replicates, 1 - tail)),
        p_value=p_value,
    )


def score_matrix(per_seed: list[dict[str, float]], where: str) -> tuple[np.ndarray, list[str]]:
    """Stack per-seed `{problem id: accuracy}` maps into `[seeds, problems]`; the problems must agree."""
    if not per_seed:
        raise ValueError(f"{where}: no seeds")
    problems = sorted(per_seed[0])
    for index, scores in enumerate(per_seed[1:], start=1):
        if sorted(scores) != problems:
            missing = sorted(set(problems) ^ set(scores))[:3]
            raise ValueError(f"{where}: seed {index} answered other problems than seed 0 (e.g. {missing})")
    return np.array([[scores[problem] for problem in problems] for scores in per_seed]), problems
