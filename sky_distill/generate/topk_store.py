"""The compact store of a shard's top-k log-probs: what offline logit distillation reads.

`generate.sampling.logprobs=k` records, per sampled token, the teacher's k most likely token
ids and their log-probs (vLLM's `raw_logprobs`: the model's own T=1 distribution). As JSON
that is ~25 bytes per entry; here a shard's samples are kept beside its trace file in
`<shard>.topk/chunk-NNNNNN.npz` (zlib-compressed numpy arrays) holding, for all samples of one
flush:

    problem_id   [S] str       sample_index [S] int32     offsets [S + 1] int64 (token rows per sample)
    ids          [T, k] int32  logprobs [T, k] float16, sorted by log-prob, -1 / -inf padding
    sampled      [T] int32     the sampled token ids (what aligns the rows to the response)

A chunk is written (to a temporary name, then renamed) before its samples' lines are appended
to the shard file, so after a kill every sample in the trace file has its rows. Rows of a
sample the trace file lacks are orphans: the re-run samples it again (same seed, same rows)
into a later chunk, and readers take the last chunk's rows of a key.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Key = tuple[str, int]
CHUNK_GLOB = "chunk-*.npz"


@dataclass(frozen=True)
class TopK:
    """One sample's teacher rows: `ids`/`logprobs` [n, k] and the `sampled` ids [n]."""

    ids: np.ndarray
    logprobs: np.ndarray
    sampled: np.ndarray

    def __len__(self) -> int:
        return len(self.sampled)


def numeric_keys(logprobs: list[dict[str, float]]) -> bool:
    """Whether the entries are keyed by token id (vLLM), not by token text (most APIs)."""
    return all(key.lstrip("-").isdigit() for position in logprobs for key in position)


def pack_topk(logprobs: list[dict[str, float]], token_ids: list[int], k: int) -> TopK:
    """The k most likely entries of each position (an extra sampled-token entry is dropped). Pure."""
    if len(logprobs) != len(token_ids):
        raise ValueError(f"{len(logprobs)} log-prob positions for {len(token_ids)} sampled tokens")
    ids = np.full((len(token_ids), k), -1, dtype=np.int32)
    values = np.full((len(token_ids), k), -np.inf, dtype=np.float16)
    for row, position in enumerate(logprobs):
        top = sorted(position.items(), key=lambda item: -item[1])[:k]
        ids[row, : len(top)] = [int(token) for token, _ in top]
        values[row, : len(top)] = [value for _, value in top]
    return TopK(ids, values, np.asarray(token_ids, dtype=np.int32))


def chunk_dir(shard_file: str | Path) -> Path:
    shard_file = Path(shard_file)
    return shard_file.with_name(shard_file.stem + ".topk")


class TopKWriter:
    """Buffers samples' rows and writes each flush as one chunk file."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._next = len(list(self.directory.glob(CHUNK_GLOB)))
        self._pending: list[tuple[Key, TopK]] = []

    def add(self, key: Key, rows: TopK) -> None:
        self._pending.append((key, rows))

    def flush(self) -> Path | None:
        if not self._pending:
            return None
        keys = [key for key, _ in self._pending]
        rows = [topk for _, topk in self._pending]
        path = self.directory / f"chunk-{self._next:06d}.npz"
        temporary = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
        np.savez_compressed(
            temporary,
            problem_id=np.asarray([problem_id for problem_id, _ in keys], dtype=np.str_),
            sample_index=np.asarray([index for _, index in keys], dtype=np.int32),
            offsets=np.cumsum([0, *(len(topk) for topk in rows)]).astype(np.int64),
            ids=np.concatenate([topk.ids for topk in rows]),
            logprobs=np.concatenate([topk.logprobs for topk in rows]),
            sampled=np.concatenate([topk.sampled for topk in rows]),
        )
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        self._next += 1
        self._pending = []
        return path


def read_chunks(directories: Iterable[str | Path], wanted: set[Key] | None = None) -> dict[Key, TopK]:
    """Every sample's rows in the chunk files of the given directories (the last chunk wins)."""
    found: dict[Key, TopK] = {}
    for directory in directories:
        for path in sorted(Path(directory).glob(CHUNK_GLOB)):
            with np.load(path) as chunk:
                offsets = chunk["offsets"]
                ids, logprobs, sampled = chunk["ids"], chunk["logprobs"], chunk["sampled"]
                for index, (problem_id, sample_index) in enumerate(zip(chunk["problem_id"], chunk["sample_index"])):
                    key = (str(problem_id), int(sample_index))
                    if wanted is None or key in wanted:
                        rows = slice(offsets[index], offsets[index + 1])
                        found[key] = TopK(ids[rows], logprobs[rows], sampled[rows])
    return found


def store_directories(shard_dir: str | Path) -> list[Path]:
    """The chunk directories of every shard of a generate stage."""
    return sorted(Path(shard_dir).glob("*.topk"))


def store_bytes_per_token(directories: Iterable[str | Path]) -> tuple[int, int]:
    """(bytes on disk, token rows) of the stores: the storage cost of the teacher signal."""
    size = tokens = 0
    for directory in directories:
        for path in Path(directory).glob(CHUNK_GLOB):
            size += path.stat().st_size
            with np.load(path) as chunk:
                tokens += int(chunk["offsets"][-1])
    return size, tokens
