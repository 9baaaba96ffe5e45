"""Running checks in worker processes with a hard per-item timeout.

math-verify's own timeout uses `signal.alarm` and does not stop every hang (a big-integer
power in C never returns to the interpreter); here a worker that overruns is killed from
outside (pebble) and replaced, so one pathological answer costs at most `timeout_s` and never
stalls the run. Items run in parallel on `workers` processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

T = TypeVar("T")


class Timeout:
    """Marks an item whose check ran past the timeout (its worker was killed)."""

    def __repr__(self) -> str:
        return "Timeout()"


class Failure:
    """Marks an item whose check raised, or whose worker died."""

    def __init__(self, message: str):
        self.message = message

    def __repr__(self) -> str:
        return f"Failure({self.message!r})"


def map_with_timeout(
    function: Callable[..., T],
    items: Sequence[tuple[Any, ...]],
    timeout_s: float,
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    max_tasks_per_worker: int = 2000,
) -> Iterator[T | Timeout | Failure]:
    """Apply `function(*item)` to each item in worker processes; yield results in item order.

    `initializer(*initargs)` runs in every worker, replacements of killed ones included;
    a worker is recycled after `max_tasks_per_worker` items (sympy's caches grow).
    """
    from pebble import ProcessPool

    if not items:
        return
    with ProcessPool(
        max_workers=workers, max_tasks=max_tasks_per_worker, initializer=initializer, initargs=initargs
    ) as pool:
        futures = [pool.schedule(function, args=item, timeout=timeout_s) for item in items]
        try:
            for future in futures:
                try:
                    yield future.result()
                except FutureTimeout:
                    yield Timeout()
                except Exception as error:  # a crash in the check is reported per item, not raised
                    yield Failure(f"{type(error).__name__}: {error}")
        finally:
            for future in futures:
                future.cancel()
