"""Verifying a batch of responses: each check in a worker process with a hard timeout, in order,
resumable from a progress file. Used by the verify stage (traces) and the eval stage (samples)."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sky_distill.config import SandboxConfig
from sky_distill.records import Problem, Verdict, append_jsonl, read_jsonl, repair_torn_tail
from sky_distill.verify.checks import VERIFIER_VERSION, check_response, prepare_worker
from sky_distill.verify.pool import Failure, Timeout, map_with_timeout

log = logging.getLogger(__name__)

_END = object()


def verdict_from_outcome(
    problem_id: str, sample_index: int, outcome: dict[str, Any] | Timeout | Failure, timeout_s: float
) -> Verdict:
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
    code: SandboxConfig | None = None,
    progress_path: str | Path | None = None,
) -> list[Verdict]:
    """Verdicts for (problem id, sample index, response) triples, in order (see `iter_verdicts`)."""
    return list(iter_verdicts(items, problems.get, timeout_s, workers, code, progress_path, total=len(items)))


def iter_verdicts(
    items: Iterable[tuple[str, int, str]],
    problem: Callable[[str], Problem | None],
    timeout_s: float,
    workers: int,
    code: SandboxConfig | None = None,
    progress_path: str | Path | None = None,
    total: int | None = None,
) -> Iterator[Verdict]:
    """Verdicts for a stream of (problem id, sample index, response) triples, in order, checked in parallel.

    Each check runs in a worker killed past `timeout_s`; only a bounded window of items is in
    flight. With `progress_path`, verdicts are appended there as they come, and verdicts already
    there (same verifier) are reused.
    """
    from tqdm import tqdm

    done = read_progress(progress_path)
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


def read_progress(progress_path: str | Path | None) -> dict[tuple[str, int], Verdict]:
    if progress_path is None or not Path(progress_path).exists():
        return {}
    repair_torn_tail(progress_path)
    verdicts, errors = read_jsonl(progress_path, Verdict)
    if errors:
        log.warning("verify: %d unreadable lines in %s are checked again", len(errors), progress_path)
    return {(v.problem_id, v.sample_index): v for v in verdicts if v.verifier_version == VERIFIER_VERSION}
