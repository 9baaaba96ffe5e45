"""`sky-distill verify`: judge every trace, curate the correct ones, write SFT data and a report.

Everything streams: traces flow through the verifier workers into `verdicts.jsonl`, then the
traces and their verdicts are read back one problem at a time for curation, the SFT files and
the report. What is held across the whole run is per problem and small (byte offsets, ids of
excluded problems, MinHash signatures for near-duplicate search), never the traces or their text.

Inputs: `<run_dir>/generate/{traces,problems}.jsonl`. Outputs in `<run_dir>/verify/`:
`verdicts.jsonl`, `sft/verified.jsonl` (kept by the policy), `sft/all.jsonl` (the same filters,
no correctness check: the no-verification ablation), `report.json` and `COMPLETE.json`.
Verdicts are appended to `verdicts.partial.jsonl` as they come, so a killed run resumes there.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sky_distill.data_sources.verify_inputs import trace_inputs
from sky_distill.records import (
    JsonlWriter,
    Problem,
    RecordError,
    Trace,
    Verdict,
    append_jsonl,
    iter_jsonl_offsets,
    read_jsonl,
    read_record_at,
    repair_torn_tail,
)
from sky_distill.runs import (
    fingerprint_files,
    fingerprint_object,
    mark_complete,
    read_json,
    write_json_atomic,
)
from sky_distill.verify.checks import VERIFIER_VERSION, check_response, prepare_worker
from sky_distill.verify.code import CodeSettings
from sky_distill.verify.pool import Failure, Timeout, map_with_timeout
from sky_distill.verify.select import TraceFilter, filter_traces, select_traces
from sky_distill.verify.sft import to_sft_example

log = logging.getLogger(__name__)

_END = object()
PARTIAL = "verdicts.partial.jsonl"
PARTIAL_SETTINGS = "verdicts.partial.settings.json"
ERROR_EXAMPLES = 20


# --- verification ---------------------------------------------------------------------------


def verdict_from_outcome(problem_id: str, sample_index: int, outcome: Any, timeout_s: float) -> Verdict:
    """A `Verdict` from what a worker returned; an error's detail names the problem."""
    common = {
        "problem_id": problem_id,
        "sample_index": sample_index,
        "verifier": "sky_distill.verify",
        "verifier_version": VERIFIER_VERSION,
    }
    if isinstance(outcome, Timeout):
        return Verdict(
            **common, correct=False, status="timeout", detail=f"check exceeded {timeout_s:g}s (worker killed)"
        )
    if isinstance(outcome, Failure):
        return Verdict(**common, correct=False, status="error", detail=f"problem {problem_id}: {outcome.message}")
    detail = outcome.get("detail")
    if outcome["status"] == "error":
        detail = f"problem {problem_id}: {detail}"
    return Verdict(
        **common,
        correct=bool(outcome["correct"]),
        status=outcome["status"],
        extracted=outcome.get("extracted"),
        detail=detail,
        elapsed_s=outcome.get("elapsed_s", 0.0),
    )


def code_budget(timeout_s: float) -> float:
    """A code problem's own cap, a little under the worker's hard timeout so it can say which test ran out."""
    return max(timeout_s - max(1.0, 0.1 * timeout_s), 0.5 * timeout_s)


def verify_responses(
    items: Sequence[tuple[str, int, str]],
    problems: Mapping[str, Problem],
    timeout_s: float,
    workers: int,
    code: CodeSettings | None = None,
    progress_path: str | Path | None = None,
) -> list[Verdict]:
    """Verdicts for (problem id, sample index, response) triples, in order (see `iter_verdicts`)."""
    return list(iter_verdicts(items, problems.get, timeout_s, workers, code, progress_path, total=len(items)))


def iter_verdicts(
    items: Iterable[tuple[str, int, str]],
    problem: Callable[[str], Problem | None],
    timeout_s: float,
    workers: int,
    code: CodeSettings | None = None,
    progress_path: str | Path | None = None,
    total: int | None = None,
) -> Iterator[Verdict]:
    """Verdicts for a stream of (problem id, sample index, response) triples, in order, checked in parallel.

    Each check runs in a worker killed past `timeout_s`; only a bounded window of items is in
    flight. With `progress_path`, verdicts are appended there as they come, and verdicts already
    there (same verifier) are reused.
    """
    from tqdm import tqdm

    done = _read_progress(progress_path)
    queued: deque[tuple[str, int, Verdict | None]] = deque()  # in item order; None: a worker checks it

    def work() -> Iterator[tuple]:
        for problem_id, sample_index, response in items:
            ready = done.pop((problem_id, sample_index), None)
            found = problem(problem_id) if ready is None else None
            if ready is None and found is None:
                ready = verdict_from_outcome(
                    problem_id,
                    sample_index,
                    {"status": "error", "correct": False, "detail": "no problem with this id in problems.jsonl"},
                    timeout_s,
                )
            queued.append((problem_id, sample_index, ready))
            if ready is None:
                yield (found.answer_type, response, found.answer, found.tests, code_budget(timeout_s))

    outcomes = map_with_timeout(
        check_response, work(), timeout_s, workers, initializer=prepare_worker, initargs=(code,)
    )
    batch: list[Verdict] = []
    reused = 0
    with tqdm(total=total, desc="verify", unit="response", mininterval=1.0) as bar:
        while True:
            outcome = next(outcomes, _END)
            while queued and queued[0][2] is not None:
                reused += 1
                bar.update()
                yield queued.popleft()[2]
            if outcome is _END:
                break
            problem_id, sample_index, _ = queued.popleft()
            verdict = verdict_from_outcome(problem_id, sample_index, outcome, timeout_s)
            batch.append(verdict)
            if progress_path is not None and len(batch) >= 256:
                append_jsonl(progress_path, batch, fsync=False)
                batch = []
            bar.update()
            yield verdict
    if progress_path is not None and batch:
        append_jsonl(progress_path, batch, fsync=False)
    if done or reused:
        log.info("verify: %d verdicts reused or decided without a check", reused)


def _read_progress(progress_path: str | Path | None) -> dict[tuple[str, int], Verdict]:
    if progress_path is None or not Path(progress_path).exists():
        return {}
    repair_torn_tail(progress_path)
    verdicts, errors = read_jsonl(progress_path, Verdict)
    if errors:
        log.warning("verify: %d unreadable lines in %s are checked again", len(errors), progress_path)
    return {(v.problem_id, v.sample_index): v for v in verdicts if v.verifier_version == VERIFIER_VERSION}


def _prepare_progress(stage_dir: Path, settings: dict[str, Any]) -> Path:
    """The partial verdicts file, emptied when it was written under other settings."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    partial, marker = stage_dir / PARTIAL, stage_dir / PARTIAL_SETTINGS
    fingerprint = fingerprint_object(settings)
    if partial.exists() and (not marker.exists() or read_json(marker).get("fingerprint") != fingerprint):
        log.info("verify: settings changed since the partial run; checking every trace again")
        partial.unlink()
    write_json_atomic(marker, {"fingerprint": fingerprint, "settings": settings})
    return partial


# --- the report ------------------------------------------------------------------------------


def _difficulty(problem: Problem | None) -> Any:
    if problem is None:
        return None
    meta = problem.metadata
    return meta.get("level") or meta.get("difficulty") or meta.get("digits")


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


class LengthTally:
    """Count, mean, median and max of completion tokens, kept as a histogram (bounded by the longest)."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()

    def add(self, tokens: int) -> None:
        self.counts[tokens] += 1

    def summary(self) -> dict[str, Any]:
        count = sum(self.counts.values())
        if not count:
            return {"count": 0}
        values = sorted(self.counts)

        def at(position: int) -> int:
            seen = 0
            for value in values:
                seen += self.counts[value]
                if seen > position:
                    return value
            raise IndexError(position)

        middle = at(count // 2) if count % 2 else (at(count // 2 - 1) + at(count // 2)) / 2
        mean = sum(value * number for value, number in self.counts.items()) / count
        return {"count": count, "mean": round(mean, 1), "median": middle, "max": values[-1]}


class CurationTally:
    """The curation report, accumulated one problem's traces at a time (memory: counters, not traces)."""

    def __init__(self) -> None:
        self.statuses: Counter = Counter()
        self.by_group: dict[str, Counter] = defaultdict(Counter)
        self.problems = self.solved = self.truncated = self.kept = self.errors = 0
        self.error_examples: list[str | None] = []
        self.lengths = {"all": LengthTally(), "correct": LengthTally(), "kept": LengthTally()}

    def add_problem(
        self, pairs: Sequence[tuple[Trace, Verdict]], kept: Sequence[Trace], problem: Problem | None
    ) -> None:
        """One problem's traces with their verdicts, and those of them kept."""
        self.problems += 1
        self.solved += any(verdict.correct for _, verdict in pairs)
        answer_type = problem.answer_type if problem else "unknown"
        for trace, verdict in pairs:
            self.statuses[verdict.status] += 1
            for group in (f"source={trace.source}", f"difficulty={_difficulty(problem)}", f"answer_type={answer_type}"):
                counts = self.by_group[group]
                counts["samples"] += 1
                counts["correct"] += int(verdict.correct)
                counts["truncated"] += int(trace.truncated)
                counts[f"status_{verdict.status}"] += 1
            self.truncated += int(trace.truncated)
            self.lengths["all"].add(trace.completion_tokens)
            if verdict.correct:
                self.lengths["correct"].add(trace.completion_tokens)
            if verdict.status == "error":
                self.errors += 1
                if len(self.error_examples) < ERROR_EXAMPLES:
                    self.error_examples.append(verdict.detail)
        for trace in kept:
            self.kept += 1
            self.lengths["kept"].add(trace.completion_tokens)

    def report(self) -> dict[str, Any]:
        samples = sum(self.statuses.values())
        report: dict[str, Any] = {
            "verify/samples": samples,
            "verify/statuses": dict(self.statuses),
            "verify/acceptance_rate": _rate(self.statuses["correct"], samples),
            "verify/timeout_rate": _rate(self.statuses["timeout"], samples),
            "verify/unparsed_rate": _rate(self.statuses["unparsed"], samples),
            "verify/error_rate": _rate(self.statuses["error"], samples),
            "verify/kept": self.kept,
            "verify/problems": self.problems,
            "verify/problems_solved": self.solved,
            "verify/truncated": self.truncated,
            "verify/truncation_rate": _rate(self.truncated, samples),
            "verify/lengths": {name: tally.summary() for name, tally in self.lengths.items()},
            "verify/errors": self.errors,
            "verify/error_examples": self.error_examples,
            "verify/by_group": {},
        }
        for group, counts in sorted(self.by_group.items()):
            count = counts["samples"]
            summary = {
                "samples": count,
                "correct": counts["correct"],
                "acceptance_rate": _rate(counts["correct"], count),
            }
            summary["truncation_rate"] = _rate(counts["truncated"], count)
            for status in ("timeout", "unparsed", "error"):
                summary[f"{status}_rate"] = _rate(counts[f"status_{status}"], count)
            report["verify/by_group"][group] = summary
        for group, summary in report["verify/by_group"].items():
            if group.startswith("answer_type="):
                kind = group.split("=", 1)[1]
                for name in ("acceptance_rate", "timeout_rate", "error_rate", "unparsed_rate"):
                    report[f"verify/{kind}/{name}"] = summary[name]
        return report


def curation_report(
    traces: Sequence[Trace],
    verdicts: dict[tuple[str, int], Verdict],
    kept: Sequence[Trace],
    problems: Mapping[str, Problem],
) -> dict[str, Any]:
    """Acceptance overall, per source, difficulty and answer type; statuses, truncation, lengths, errors."""
    tally = CurationTally()
    kept_by_problem: dict[str, list[Trace]] = defaultdict(list)
    for trace in kept:
        kept_by_problem[trace.problem_id].append(trace)
    by_problem: dict[str, list[tuple[Trace, Verdict]]] = defaultdict(list)
    for trace in traces:
        by_problem[trace.problem_id].append((trace, verdicts[trace.key]))
    for problem_id, pairs in by_problem.items():
        tally.add_problem(pairs, kept_by_problem[problem_id], problems.get(problem_id))
    return tally.report()


# --- curation ----------------------------------------------------------------------------------


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
    texts: Iterable[tuple[str, str]], config: Any, benchmarks_dir: str | None
) -> tuple[dict[str, list[str]], set[str], dict[str, Any]]:
    """Contaminated problems (id -> benchmarks), near-duplicate problems, and the filtering summary.

    Streams the problems once; what it keeps is the contaminated ids and, for near-duplicate
    search, one MinHash signature per problem (uint32 x num_perm), never the texts.
    """
    from sky_distill.verify.decontam import build_index
    from sky_distill.verify.dedup import minhash_signature, signature_groups

    decontaminate, dedup = config.decontaminate, config.dedup
    index = None
    if decontaminate.benchmarks:
        index = build_index(decontaminate.benchmarks, benchmarks_dir, decontaminate.ngram, decontaminate.min_overlap)
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


def code_settings(sandbox: Any) -> CodeSettings:
    return CodeSettings(**sandbox.model_dump())


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


def run(cfg: Any) -> dict[str, Any]:
    from sky_distill.config import stage_config, to_container
    from sky_distill.runs import provenance
    from sky_distill.verify.dedup import exact_duplicate_traces

    typed = stage_config(cfg, "verify")
    config, paths = typed["verify"], typed["paths"]
    stage_dir = Path(paths.run_dir) / "verify"
    # this run's generation, or an external trace set (verify.traces; README, Bring your own data)
    traces_path, problems_path, external = trace_inputs(config.traces, paths.run_dir)
    started = time.monotonic()
    problems = ProblemFile(problems_path)

    # Verification: the traces stream through the workers; verdicts stream to their file.
    code = code_settings(config.sandbox)
    sandbox = None
    if "code" in problems.answer_types:
        from sky_distill.verify.sandbox import require_containment

        sandbox = require_containment(code.backend, code.site_packages)  # fail closed before any code runs
    settings = {"verifier_version": VERIFIER_VERSION, "timeout_s": config.timeout_s, "code": code.__dict__}
    progress = _prepare_progress(stage_dir, settings)
    trace_errors: list[RecordError] = []
    order = {"previous": ("", -1), "sorted": True, "count": 0}

    def items() -> Iterator[tuple[str, int, str]]:
        for _, _, trace in iter_jsonl_offsets(traces_path, Trace):
            if isinstance(trace, RecordError):
                trace_errors.append(trace)
                continue
            order["sorted"] = order["sorted"] and trace.key >= order["previous"]
            order["previous"] = trace.key
            order["count"] += 1
            yield trace.problem_id, trace.sample_index, trace.response

    with JsonlWriter(stage_dir / "verdicts.jsonl") as verdict_file:
        for verdict in iter_verdicts(items(), problems.get, config.timeout_s, config.workers, code, progress):
            verdict_file.write(verdict)
    for error in [*trace_errors, *problems.errors]:
        log.warning("unreadable record: %s", error)
    verified_s = time.monotonic() - started

    # Curation, one problem at a time: filters, the policy, the SFT files and the report.
    contaminated, near, filtering = problem_exclusions(problems.texts(), config, paths.benchmarks_dir)
    excluded = frozenset(contaminated) | frozenset(near)
    tally = CurationTally()
    dropped: Counter = Counter()
    all_examples = 0
    run_name = Path(paths.run_dir).name
    sft = config.sft
    groups = problem_groups(traces_path, stage_dir / "verdicts.jsonl", bool(order["sorted"]))
    with (
        JsonlWriter(stage_dir / "sft" / "verified.jsonl") as verified,
        JsonlWriter(stage_dir / "sft" / "all.jsonl") as every,
    ):
        for pairs in groups:
            traces = [trace for trace, _ in pairs]
            verdicts = {trace.key: verdict for trace, verdict in pairs}
            problem_id = traces[0].problem_id
            if problem_id in contaminated:
                decontamination = filtering["decontamination"]
                decontamination["traces_removed"] += len(traces)
                for name in contaminated[problem_id]:
                    decontamination["traces_removed_by_benchmark"][name] += len(traces)
            duplicates = exact_duplicate_traces(traces) if config.dedup.exact else set()
            if config.dedup.exact:
                filtering["exact_duplicate_traces"] += len(duplicates)
            trace_filter = TraceFilter(
                drop_truncated=config.drop_truncated,
                min_tokens=config.min_tokens,
                max_tokens=config.max_tokens,
                excluded_problems=excluded,
                excluded_traces=frozenset(duplicates),
            )
            candidates, dropped_here = filter_traces(traces, trace_filter)
            dropped += dropped_here
            kept = select_traces(candidates, verdicts, config.policy, config.k, drop_truncated=False)
            unfiltered = select_traces(candidates, verdicts, "all", None, drop_truncated=False)
            for trace in kept:
                verified.write(to_sft_example(trace, verdicts[trace.key], sft.format, sft.system_prompt, run_name))
            for trace in unfiltered:
                every.write(to_sft_example(trace, verdicts[trace.key], sft.format, sft.system_prompt, run_name))
            all_examples += len(unfiltered)
            tally.add_problem(pairs, kept, problems.get(problem_id))

    report = {
        **tally.report(),
        "verify/all_examples": all_examples,
        "verify/dropped": dict(dropped),
        "verify/filtering": filtering,
        "verify/unreadable_records": [str(error) for error in [*trace_errors, *problems.errors]],
        "verify/seconds": round(time.monotonic() - started, 2),
        "verify/responses_per_s": round(order["count"] / verified_s, 2) if verified_s > 0 else None,
        "verifier_version": VERIFIER_VERSION,
        "policy": config.model_dump(),
        "inputs": {
            "traces": fingerprint_files([traces_path]),
            "problems": fingerprint_files([problems_path]),
            **({"external": external} if external else {}),
        },
        "provenance": provenance("verify", to_container(cfg)),
    }
    if sandbox is not None:
        report["sandbox"] = sandbox
    write_json_atomic(stage_dir / "report.json", report)
    mark_complete(stage_dir, report)
    (stage_dir / PARTIAL).unlink(missing_ok=True)
    (stage_dir / PARTIAL_SETTINGS).unlink(missing_ok=True)
    return report
