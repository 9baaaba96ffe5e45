"""The append-only trace file of a shard: what is done, what is missing, and safe appends.

A crash can only tear the last line (appends are whole lines, flushed); `open_store` cuts a
torn tail, so a re-run sees exactly the samples that were written and generates the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

from sky_distill.records import RecordError, Trace, append_jsonl, iter_jsonl, repair_torn_tail

log = logging.getLogger(__name__)


class TraceStore:
    def __init__(self, path: str | Path, flush_every: int = 64, flush_seconds: float = 2.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.torn_bytes = repair_torn_tail(self.path)
        if self.torn_bytes:
            log.warning(
                "%s: discarded a torn last line (%d bytes) left by an interrupted run", self.path, self.torn_bytes
            )
        self.done: set[tuple[str, int]] = set()
        self.errors: list[RecordError] = []
        self.duplicates = 0
        if self.path.exists():
            for _, item in iter_jsonl(self.path, Trace):
                if isinstance(item, RecordError):
                    self.errors.append(item)
                elif item.key in self.done:
                    self.duplicates += 1
                else:
                    self.done.add(item.key)
        self._pending: list[Trace] = []
        self._last_flush = time.monotonic()

    def missing(self, keys: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
        return [key for key in keys if key not in self.done]

    def add(self, trace: Trace) -> None:
        if trace.key in self.done:
            return
        self.done.add(trace.key)
        self._pending.append(trace)
        if len(self._pending) >= self.flush_every or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        append_jsonl(self.path, self._pending)
        self._pending = []
        self._last_flush = time.monotonic()
