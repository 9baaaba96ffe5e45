"""Benchmark decontamination: drop training problems that contain an eval problem (word n-gram overlap).

Eval sets are benchmarks of the eval registry (`eval/benchmarks/`), read as the eval stage reads
them: the local copy the definition names in `paths.benchmarks_dir` (`mbpp` -> `mbpp_test.jsonl`),
else the Hub, each through its own field mapping (LiveCodeBench: `question_content`). A set that
yields no problem text is an error. Words are lower
case with punctuation and LaTeX markup dropped. A training problem is contaminated by a benchmark
when it holds at least `min_overlap` of one of the benchmark's problems' n-grams (`min_overlap`
near 0: any shared n-gram); an eval problem shorter than n words must match whole. The index
is pure; reading the sets is `load_benchmark_texts`.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sky_distill.benchmarks.loading import problem_statements
from sky_distill.benchmarks.registry import BenchmarkSpec, load_registry, unknown_benchmark
from sky_distill.errors import MissingInputError

log = logging.getLogger(__name__)


def words(text: str) -> list[str]:
    text = re.sub(r"\\[a-zA-Z]+", " ", text.lower())  # \frac, \left: markup, not content
    return re.findall(r"[a-z0-9]+", text)


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


@dataclass
class ContaminationIndex:
    """The word n-grams of every eval problem.

    A text is contaminated by an eval problem when it contains at least `min_overlap` of that
    problem's n-grams (all of its words in a row, for a problem shorter than n): most of the eval problem
    appears in it. Boilerplate shared by many problems ("where m and n are relatively prime
    positive integers") is a small part of any one problem and does not count as contamination.
    """

    n: int = 8
    min_overlap: float = 0.5
    grams: dict[tuple[str, ...], list[int]] = field(default_factory=dict)
    short_texts: dict[tuple[str, ...], list[int]] = field(default_factory=dict)
    problems: list[tuple[str, int]] = field(default_factory=list)  # (benchmark, number of n-grams)
    sizes: Counter = field(default_factory=Counter)

    def add(self, benchmark: str, texts: Iterable[str]) -> None:
        for text in texts:
            tokens = words(text)
            grams = ngrams(tokens, self.n)
            number = len(self.problems)
            self.problems.append((benchmark, len(grams)))
            self.sizes[benchmark] += 1
            if not grams:
                self.short_texts.setdefault(tuple(tokens), []).append(number)
            for gram in grams:
                self.grams.setdefault(gram, []).append(number)

    def matches(self, text: str) -> set[str]:
        """The benchmarks with a problem this text contains (most of its n-grams)."""
        tokens = words(text)
        found = set()
        for length in {len(short) for short in self.short_texts}:  # short eval problems: contained word for word
            for start in range(len(tokens) - length + 1):
                for number in self.short_texts.get(tuple(tokens[start : start + length]), ()):
                    found.add(self.problems[number][0])
        shared: Counter = Counter()
        for gram in ngrams(tokens, self.n):
            shared.update(self.grams.get(gram, ()))
        for number, count in shared.items():
            benchmark, total = self.problems[number]
            if count >= self.min_overlap * total:
                found.add(benchmark)
        return found


def load_benchmark_texts(
    name: str,
    benchmarks_dir: str | Path | None,
    registry: dict[str, BenchmarkSpec] | None = None,
    source: str = "auto",
) -> list[str]:
    """The problem statements of one eval set; a set without any is an error naming where it looked."""
    registry = load_registry() if registry is None else registry
    if name not in registry:
        raise unknown_benchmark(name, list(registry))
    texts, errors, where = problem_statements(registry[name], benchmarks_dir, source)
    if not texts:
        example = f"; e.g. {errors[0]}" if errors else ""
        raise MissingInputError(
            f"verify.decontaminate: eval set {name!r} yields no problem texts from {where} "
            f"({len(errors)} rows without one{example})"
        )
    if errors:
        log.warning("verify.decontaminate: %s: %d rows without a problem text, e.g. %s", name, len(errors), errors[0])
    return texts


def build_index(
    names: Iterable[str],
    benchmarks_dir: str | Path | None,
    n: int,
    min_overlap: float = 0.5,
    registry: dict[str, BenchmarkSpec] | None = None,
    source: str = "auto",
) -> ContaminationIndex:
    """The index of the named eval sets (registry: the repository's `eval/` unless given)."""
    registry = load_registry() if registry is None else registry
    index = ContaminationIndex(n=n, min_overlap=min_overlap)
    for name in names:
        index.add(name, load_benchmark_texts(name, benchmarks_dir, registry, source))
    return index


def contaminated_problems(problems: dict[str, str], index: ContaminationIndex) -> dict[str, list[str]]:
    """Problem id -> the benchmarks it overlaps, for every contaminated problem."""
    found = {}
    for problem_id, text in problems.items():
        hits = index.matches(text)
        if hits:
            found[problem_id] = sorted(hits)
    return found
