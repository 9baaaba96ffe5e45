"""Running checks in worker processes with a hard per-item timeout.

math-verify's own timeout uses `signal.alarm` and does not stop every hang; here a worker that
overruns is killed from outside (pebble) and replaced, so one pathological answer costs at
most `timeout_s` and never stalls the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

T = TypeVar("T")


class Timeout:
    """Marks an item whose check ran past the timeout."""

    def __repr__(self) -> str:
        return "Timeout()"


class Failure:
    def __init__(self, message: str):
        self.message = message

    def __repr__(self) -> str:
        return f"Failure({self.message!r})"


def map_with_timeout(
    function: Callable[..., T], items: Sequence[tuple[Any, ...]], timeout_s: float, workers: int
) -> Iterator[T | Timeout | Failure]:
    """Apply `function(*item)` to each item in worker processes; yield results in item order."""
    from pebble import ProcessPool

    with ProcessPool(max_workers=workers) as pool:
        futures = [pool.schedule(function, args=item, timeout=timeout_s) for item in items]
        for future in futures:
            try:
                yield future.result()
            except FutureTimeout:
                yield Timeout()
            except Exception as error:  # a crash in the check is reported per item, not raised
                yield Failure(f"{type(error).__name__}: {error}")
