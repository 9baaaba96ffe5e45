"""Benchmark decontamination: drop training problems that contain an eval problem (word n-gram overlap).

Eval sets are JSONL files in `paths.benchmarks_dir`, found by name: `<name>.jsonl`, or the local
file the eval registry names for that benchmark (`mbpp` -> `mbpp_test.jsonl`). Words are lower
case with punctuation and LaTeX markup dropped. A training problem is contaminated by a benchmark
when it holds at least `min_overlap` of one of the benchmark's problems' n-grams (`min_overlap`
near 0: any shared n-gram); an eval problem shorter than n words must match whole. The index
is pure; reading files is `load_benchmark_texts`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sky_distill.errors import MissingInputError


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


def benchmark_file(name: str, benchmarks_dir: str | Path) -> Path:
    """`<dir>/<name>.jsonl`, else the local file the eval registry gives the benchmark."""
    directory = Path(benchmarks_dir)
    direct = directory / f"{name}.jsonl"
    if direct.is_file():
        return direct
    try:
        from sky_distill.benchmarks.registry import load_registry

        spec = load_registry().get(name)
    except Exception:  # the registry is optional here: a name can always be a file stem
        spec = None
    if spec is not None and spec.local is not None and (directory / spec.local.file).is_file():
        return directory / spec.local.file
    raise MissingInputError(f"verify.decontaminate: no eval set {name!r} in {directory} (looked for {direct.name})")


def load_benchmark_texts(name: str, benchmarks_dir: str | Path | None) -> list[str]:
    """The problem statements of one eval set."""
    if not benchmarks_dir:
        raise MissingInputError(
            "verify.decontaminate.benchmarks needs paths.benchmarks_dir (or $SKY_DISTILL_BENCHMARKS)"
        )
    path = benchmark_file(name, benchmarks_dir)
    texts = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise MissingInputError(f"{path}:{number}: not valid JSON ({error.msg})") from error
            text = row.get("problem") or row.get("question") or row.get("prompt") or row.get("text")
            if text:
                texts.append(str(text))
    return texts


def build_index(
    names: Iterable[str], benchmarks_dir: str | Path | None, n: int, min_overlap: float = 0.5
) -> ContaminationIndex:
    index = ContaminationIndex(n=n, min_overlap=min_overlap)
    for name in names:
        index.add(name, load_benchmark_texts(name, benchmarks_dir))
    return index


def contaminated_problems(problems: dict[str, str], index: ContaminationIndex) -> dict[str, list[str]]:
    """Problem id -> the benchmarks it overlaps, for every contaminated problem."""
    found = {}
    for problem_id, text in problems.items():
        hits = index.matches(text)
        if hits:
            found[problem_id] = sorted(hits)
    return found
