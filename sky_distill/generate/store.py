"""The append-only trace file of a shard: what is done, what is missing, and safe appends.

One line per sample, keyed by (problem id, sample index). Appends are whole lines, written in
batches (every `flush_every` samples or `flush_seconds`) and fsynced at most every
`flush_seconds`, so a killed process (kill -9 at any moment) can only tear the last line, and
a crashed node loses at most the last seconds. Opening the store cuts a torn tail, so a re-run
sees exactly the samples that were written and generates the rest. A lock file keeps a second process (a requeued SLURM task while the first
still runs) from writing the same shard.

With `topk` set (generate.sampling.logprobs), each trace's top-k log-probs go to the compact
store beside the file (`generate/topk_store.py`), written before the lines of each flush; the
trace line keeps its sampled `token_ids`, which align the stored rows to the response.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sky_distill.errors import SkyDistillError
from sky_distill.generate.thoughts import split_thought
from sky_distill.generate.topk_store import TopKWriter, chunk_dir, numeric_keys, pack_topk
from sky_distill.records import RecordError, Trace, append_jsonl, iter_jsonl, repair_torn_tail

log = logging.getLogger(__name__)


class ShardBusyError(SkyDistillError):
    """Another process holds the shard's lock."""


@dataclass(frozen=True)
class TraceStats:
    """What the summary needs of a stored trace, without keeping the trace."""

    prompt_tokens: int
    completion_tokens: int
    truncated: bool
    thought_closed: bool

    @classmethod
    def of(cls, trace: Trace) -> TraceStats:
        closed = split_thought(trace.response, trace.reasoning, trace.thought_format or "none").closed
        return cls(trace.prompt_tokens, trace.completion_tokens, trace.truncated, closed)


def lock_file(path: Path) -> int:
    """Hold an exclusive lock on `path` (created if needed); raise if another process holds it."""
    import fcntl

    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(handle, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(handle)
        raise ShardBusyError(f"{path.with_suffix('')} is being written by {holder}; wait for it or stop it") from None
    os.ftruncate(handle, 0)
    os.pwrite(handle, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    return handle


class TraceStore:
    def __init__(self, path: str | Path, flush_every: int = 64, flush_seconds: float = 5.0, topk: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock: int | None = lock_file(self.path.with_name(self.path.name + ".lock"))  # before touching the file
        self._unlock = weakref.finalize(self, os.close, self._lock)  # also if the store is never closed
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.torn_bytes = repair_torn_tail(self.path)
        if self.torn_bytes:
            log.warning(
                "%s: discarded a torn last line (%d bytes) left by an interrupted run", self.path, self.torn_bytes
            )
        self.stats: dict[tuple[str, int], TraceStats] = {}
        self.errors: list[RecordError] = []
        self.duplicates = 0
        if self.path.exists():
            for _, item in iter_jsonl(self.path, Trace):
                if isinstance(item, RecordError):
                    self.errors.append(item)
                elif item.key in self.stats:
                    self.duplicates += 1
                else:
                    self.stats[item.key] = TraceStats.of(item)
        self.done: set[tuple[str, int]] = set(self.stats)
        self._pending: list[Trace] = []
        self.topk = topk
        self._topk_writer = TopKWriter(chunk_dir(self.path)) if topk else None
        self._last_flush = self._last_sync = time.monotonic()

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def missing(self, keys: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
        return [key for key in keys if key not in self.done]

    def add(self, trace: Trace) -> bool:
        """Buffer a trace for appending; False (and nothing written) if its key is already stored."""
        if trace.key in self.done:
            return False
        self.done.add(trace.key)
        self.stats[trace.key] = TraceStats.of(trace)
        stored = trace.logprobs is not None and trace.token_ids is not None
        if self._topk_writer and stored and numeric_keys(trace.logprobs):  # API text keys stay JSON
            self._topk_writer.add(trace.key, pack_topk(trace.logprobs, trace.token_ids, self.topk))
            trace = trace.model_copy(update={"logprobs": None})
        self._pending.append(trace)
        if len(self._pending) >= self.flush_every or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()
        return True

    def flush(self, sync: bool | None = None) -> None:
        """Append what is buffered; fsync too if `sync`, or (None) if the last fsync is `flush_seconds` old."""
        now = time.monotonic()
        if sync is None:
            sync = now - self._last_sync >= self.flush_seconds
        if self._topk_writer:
            self._topk_writer.flush()  # first: every trace line written has its rows
        append_jsonl(self.path, self._pending, fsync=sync)
        self._pending = []
        self._last_flush = now
        if sync:
            self._last_sync = now

    def close(self) -> None:
        """Write what is buffered (also when the run fails: those samples are good) and unlock."""
        if self._lock is None:
            return
        try:
            self.flush(sync=True)
        finally:
            self._unlock()
            self._lock = None
