"""The verify stage's curation inputs, streamed: problems by id from `problems.jsonl`, each problem's
(trace, verdict) pairs, and the problems to exclude (contaminated, near duplicates)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sky_distill.benchmarks.registry import load_registry
from sky_distill.config import VerifyConfig
from sky_distill.records import Problem, RecordError, Trace, Verdict, iter_jsonl_offsets, read_record_at
from sky_distill.verify.decontam import build_index
from sky_distill.verify.dedup import minhash_signature, signature_groups

ERROR_EXAMPLES = 20


class ProblemFile:
    """The problems of `problems.jsonl` by id, read on demand: memory holds each id's byte offset
    (and the last problem read), not the problems; a repeated id means its last line, as a dict would."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offsets: dict[str, int] = {}
        self.errors: list[RecordError] = []
        self.answer_types: set[str] = set()
        for offset, _, item in iter_jsonl_offsets(self.path, Problem):
            if isinstance(item, RecordError):
                self.errors.append(item)
            else:
                self.offsets[item.id] = offset
                self.answer_types.add(item.answer_type)
        self._last: Problem | None = None

    def get(self, problem_id: str) -> Problem | None:
        if self._last is not None and self._last.id == problem_id:
            return self._last
        offset = self.offsets.get(problem_id)
        if offset is None:
            return None
        with open(self.path, "rb") as handle:
            self._last = read_record_at(handle, offset, Problem)
        return self._last

    def texts(self) -> Iterator[tuple[str, str]]:
        """(id, statement) of every problem, streamed."""
        for offset, _, item in iter_jsonl_offsets(self.path, Problem):
            if not isinstance(item, RecordError) and self.offsets[item.id] == offset:
                yield item.id, item.problem


def problem_exclusions(
    texts: Iterable[tuple[str, str]], config: VerifyConfig, benchmarks_dir: str | None
) -> tuple[dict[str, list[str]], set[str], dict[str, Any]]:
    """Contaminated problems (id -> benchmarks), near-duplicate problems, and the filtering summary.

    Streams the problems once; what it keeps is the contaminated ids and, for near-duplicate
    search, one MinHash signature per problem (uint32 x num_perm), never the texts.
    """
    decontaminate, dedup = config.decontaminate, config.dedup
    index = None
    if decontaminate.benchmarks:
        registry = load_registry(decontaminate.registry_dir)
        index = build_index(
            decontaminate.benchmarks,
            benchmarks_dir,
            decontaminate.ngram,
            decontaminate.min_overlap,
            registry,
            decontaminate.source,
        )
    found: dict[str, list[str]] = {}
    signatures: dict[str, Any] = {}
    for problem_id, text in texts:
        hits = index.matches(text) if index is not None else set()
        if hits:
            found[problem_id] = sorted(hits)
        elif dedup.near_problems:
            signatures[problem_id] = minhash_signature(text, dedup.num_perm, dedup.shingle_words).astype("uint32")
    summary: dict[str, Any] = {}
    if index is not None:
        per_benchmark = Counter(name for names in found.values() for name in names)
        summary["decontamination"] = {
            "ngram": decontaminate.ngram,
            "min_overlap": decontaminate.min_overlap,
            "benchmarks": {name: index.sizes[name] for name in decontaminate.benchmarks},
            "problems_removed": len(found),
            "traces_removed": 0,  # counted as the traces stream by
            "problems_removed_by_benchmark": {name: per_benchmark[name] for name in decontaminate.benchmarks},
            "traces_removed_by_benchmark": {name: 0 for name in decontaminate.benchmarks},
            "examples": sorted(found)[:ERROR_EXAMPLES],
        }
    near: set[str] = set()
    if dedup.near_problems:
        near = {key for group in signature_groups(signatures, dedup.threshold) for key in group[1:]}
        summary["near_duplicate_problems_removed"] = len(near)
    if dedup.exact:
        summary["exact_duplicate_traces"] = 0  # counted per problem as the traces stream by
    return found, near, summary


def problem_groups(traces_path: Path, verdicts_path: Path, in_order: bool) -> Iterator[list[tuple[Trace, Verdict]]]:
    """Each problem's (trace, verdict) pairs, problems by id, samples in file order.

    The verdicts file holds one line per readable trace, in the same order. A trace file sorted by
    problem id (what merge writes) is streamed; another is first indexed (key and two byte offsets
    per trace) and read in sorted order.
    """
    traces = (item for _, _, item in iter_jsonl_offsets(traces_path, Trace) if not isinstance(item, RecordError))
    verdicts = (item for _, _, item in iter_jsonl_offsets(verdicts_path, Verdict))
    if in_order:
        group: list[tuple[Trace, Verdict]] = []
        for trace, verdict in zip(traces, verdicts, strict=True):
            if group and group[0][0].problem_id != trace.problem_id:
                yield group
                group = []
            group.append((trace, verdict))
        if group:
            yield group
        return
    trace_lines = (
        (offset, item)
        for offset, _, item in iter_jsonl_offsets(traces_path, Trace)
        if not isinstance(item, RecordError)
    )
    verdict_lines = (offset for offset, _, _ in iter_jsonl_offsets(verdicts_path, Verdict))
    index = sorted(
        (trace.problem_id, position, trace_offset, verdict_offset)
        for position, ((trace_offset, trace), verdict_offset) in enumerate(zip(trace_lines, verdict_lines, strict=True))
    )
    with open(traces_path, "rb") as trace_file, open(verdicts_path, "rb") as verdict_file:
        group = []
        for problem_id, _, trace_offset, verdict_offset in index:
            if group and group[0][0].problem_id != problem_id:
                yield group
                group = []
            group.append(
                (read_record_at(trace_file, trace_offset, Trace), read_record_at(verdict_file, verdict_offset, Verdict))
            )
        if group:
            yield group
