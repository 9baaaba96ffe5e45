"""Running checks in worker processes with a hard per-item timeout.

math-verify's own timeout uses `signal.alarm` and does not stop every hang (a big-integer
power in C never returns to the interpreter); here a worker that overruns is killed from
outside (pebble) and replaced, so one pathological answer costs at most `timeout_s` and never
stalls the run. Items run in parallel on `workers` processes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from itertools import chain
from typing import Any, TypeVar

T = TypeVar("T")
_END = object()


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
    items: Iterable[tuple[Any, ...]],
    timeout_s: float,
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    max_tasks_per_worker: int = 2000,
    window: int = 256,
) -> Iterator[T | Timeout | Failure]:
    """Apply `function(*item)` to each item in worker processes; yield results in item order.

    Items are taken lazily, at most `window` (or `workers`, if more) in flight, so a stream of
    any length runs in bounded memory. `initializer(*initargs)` runs in every worker, replacements
    of killed ones included; a worker is recycled after `max_tasks_per_worker` items (sympy's caches grow).
    """
    from pebble import ProcessPool

    source = iter(items)
    first = next(source, _END)
    if first is _END:
        return
    source = chain([first], source)
    with ProcessPool(
        max_workers=workers, max_tasks=max_tasks_per_worker, initializer=initializer, initargs=initargs
    ) as pool:
        futures: deque = deque()
        try:
            while True:
                while len(futures) < max(window, workers):
                    item = next(source, _END)
                    if item is _END:
                        break
                    futures.append(pool.schedule(function, args=item, timeout=timeout_s))
                if not futures:
                    break
                future = futures.popleft()
                try:
                    yield future.result()
                except FutureTimeout:
                    yield Timeout()
                except Exception as error:  # a crash in the check is reported per item, not raised
                    yield Failure(f"{type(error).__name__}: {error}")
        finally:
            for future in futures:
                future.cancel()
