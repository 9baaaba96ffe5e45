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


# --- reading for training: the wanted samples' rows, memory-mapped -------------------------------
#
# Compressed chunks cannot be memory-mapped, so training first copies the rows of the samples it
# trains on (not the rejected traces) into one uncompressed cache, decompressing one chunk at a
# time; the first rank to take the cache's lock builds it, the others wait and reuse it. Samples
# are found by a 64-bit hash of their key (sorted, searched), so the index costs 16 bytes per
# sample, and a sample's rows are read (copied out of the mapping) only when asked for.

CACHE_FILES = ("ids", "logprobs", "sampled")
CACHE_MARKER = "COMPLETE.json"


def key_hash(problem_id: str, sample_index: int) -> int:
    """A stable 64-bit hash of a sample's key (the cache's index)."""
    import hashlib

    digest = hashlib.blake2b(f"{problem_id}\0{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _hashes(keys: Iterable[Key]) -> np.ndarray:
    return np.fromiter((key_hash(p, i) for p, i in keys), dtype=np.uint64)


def _chunk_paths(directories: Iterable[str | Path]) -> list[Path]:
    return [path for directory in directories for path in sorted(Path(directory).glob(CHUNK_GLOB))]


def _cache_fingerprint(chunks: list[Path], wanted: np.ndarray) -> str:
    import hashlib

    digest = hashlib.sha256(np.sort(wanted).tobytes())
    for path in chunks:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def build_row_cache(directories: Iterable[str | Path], wanted: Iterable[Key], cache_dir: str | Path) -> Path:
    """Copy the wanted samples' rows (the last chunk's, as `read_chunks`) into `cache_dir`; reuse a complete one.

    Memory holds one chunk and the wanted keys' hashes, never the rows of every sample.
    """
    import fcntl
    import json
    import shutil

    cache_dir = Path(cache_dir)
    chunks = _chunk_paths(directories)
    wanted_hashes = np.unique(_hashes(wanted))
    fingerprint = _cache_fingerprint(chunks, wanted_hashes)
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(cache_dir.with_name(cache_dir.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another rank may be building it: wait, then reuse
        marker = cache_dir / CACHE_MARKER
        if marker.exists() and json.loads(marker.read_text()).get("fingerprint") == fingerprint:
            return cache_dir
        # Pass 1: which chunk and rows hold each wanted sample (the last one wins).
        winner_chunk = np.full(len(wanted_hashes), -1, dtype=np.int32)
        winner_start = np.zeros(len(wanted_hashes), dtype=np.int64)
        winner_rows = np.zeros(len(wanted_hashes), dtype=np.int64)
        width = 0
        for number, path in enumerate(chunks if len(wanted_hashes) else []):
            with np.load(path) as chunk:
                offsets = chunk["offsets"]
                hashes = _hashes(zip(chunk["problem_id"].tolist(), chunk["sample_index"].tolist()))
            places = np.searchsorted(wanted_hashes, hashes)
            inside = np.minimum(places, len(wanted_hashes) - 1)
            found = (places < len(wanted_hashes)) & (wanted_hashes[inside] == hashes)
            rows = np.flatnonzero(found)
            winner_chunk[places[rows]] = number
            winner_start[places[rows]] = offsets[rows]
            winner_rows[places[rows]] = offsets[rows + 1] - offsets[rows]
        present = winner_chunk >= 0
        hashes_out = wanted_hashes[present]
        lengths = winner_rows[present]
        starts_out = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        total = int(starts_out[-1])
        if present.any():
            with np.load(chunks[int(winner_chunk[present][0])]) as chunk:
                width = int(chunk["ids"].shape[1])
        building = cache_dir.with_name(f".{cache_dir.name}.tmp-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        shapes = {"ids": (total, width), "logprobs": (total, width), "sampled": (total,)}
        dtypes = {"ids": np.int32, "logprobs": np.float16, "sampled": np.int32}
        files, data_start = {}, {}
        for name in CACHE_FILES:  # a .npy header, then rows by plain writes (no dirty mapped pages)
            with open(building / f"{name}.npy", "wb") as handle:
                descr = np.lib.format.dtype_to_descr(np.dtype(dtypes[name]))
                header = {"descr": descr, "fortran_order": False, "shape": shapes[name]}
                np.lib.format.write_array_header_1_0(handle, header)
                data_start[name] = handle.tell()
                handle.truncate(data_start[name] + int(np.prod(shapes[name])) * np.dtype(dtypes[name]).itemsize)
            files[name] = os.open(building / f"{name}.npy", os.O_WRONLY)
        # Pass 2: one chunk at a time, write its winners' rows to their places.
        positions = np.flatnonzero(present)
        chunk_of = winner_chunk[present]
        try:
            for number in np.unique(chunk_of):
                members = np.flatnonzero(chunk_of == number)
                with np.load(chunks[int(number)]) as chunk:
                    arrays = {name: chunk[name] for name in CACHE_FILES}
                for member in members:
                    first = winner_start[positions[member]]
                    source = slice(first, first + lengths[member])
                    for name in CACHE_FILES:
                        rows = np.ascontiguousarray(arrays[name][source], dtype=dtypes[name])
                        row_bytes = rows.itemsize * (width if rows.ndim == 2 else 1)
                        os.pwrite(files[name], rows.tobytes(), data_start[name] + int(starts_out[member]) * row_bytes)
                del arrays
            for handle in files.values():
                os.fsync(handle)
        finally:
            for handle in files.values():
                os.close(handle)
        np.save(building / "hashes.npy", hashes_out)
        np.save(building / "offsets.npy", starts_out)
        (building / CACHE_MARKER).write_text(
            json.dumps({"fingerprint": fingerprint, "samples": int(present.sum()), "rows": total, "k": width})
        )
        shutil.rmtree(cache_dir, ignore_errors=True)
        os.replace(building, cache_dir)
    return cache_dir


class TopKRows:
    """The cached rows, memory-mapped: a mapping from key to `TopK` that reads nothing until asked.

    `get` returns the sampled ids (read now, for the alignment check) and a `RowSpan` that
    copies a sample's `ids`/`logprobs` out of the mapping when training collates them, then
    lets the kernel drop those pages again, so resident memory stays independent of the store.
    """

    def __init__(self, cache_dir: str | Path):
        cache_dir = Path(cache_dir)
        self.hashes = np.load(cache_dir / "hashes.npy")
        self.offsets = np.load(cache_dir / "offsets.npy")
        self.ids = np.load(cache_dir / "ids.npy", mmap_mode="r")
        self.logprobs = np.load(cache_dir / "logprobs.npy", mmap_mode="r")
        self.sampled = np.load(cache_dir / "sampled.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.hashes)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and self._position(key) is not None

    def _position(self, key: Key) -> int | None:
        value = np.uint64(key_hash(*key))
        place = int(np.searchsorted(self.hashes, value))
        return place if place < len(self.hashes) and self.hashes[place] == value else None

    def get(self, key: Key, default: TopK | None = None) -> TopK | None:
        place = self._position(key)
        if place is None:
            return default
        start, stop = int(self.offsets[place]), int(self.offsets[place + 1])
        ids, logprobs = RowSpan(self.ids, start, stop), RowSpan(self.logprobs, start, stop)
        return TopK(ids, logprobs, read_released(self.sampled, start, stop))

    def __getitem__(self, key: Key) -> TopK:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found


FAULT_AROUND = 1 << 16  # the kernel maps up to this window around a faulting page (fault_around_bytes)


def read_released(array: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of a memory-mapped array, copied; the mapping's pages around them are then
    released (with the neighbours the kernel mapped along), so reading leaves nothing resident."""
    import mmap

    rows = np.array(array[start:stop])
    handle = getattr(array, "_mmap", None)
    if handle is not None and stop > start:
        row_bytes = array.strides[0]
        begin = max(0, array.offset + start * row_bytes - FAULT_AROUND)
        end = min(len(handle), array.offset + stop * row_bytes + FAULT_AROUND)
        first = begin - begin % mmap.PAGESIZE
        handle.madvise(mmap.MADV_DONTNEED, first, end - first)
    return rows


@dataclass(frozen=True)
class RowSpan:
    """Rows [start, stop) of a memory-mapped array, not read until `read()` (what training keeps)."""

    array: np.ndarray
    start: int
    stop: int

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    def read(self) -> np.ndarray:
        return read_released(self.array, self.start, self.stop)

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, item: slice) -> RowSpan:
        begin, end, step = item.indices(len(self))
        if step != 1:
            raise ValueError("a row span is sliced with step 1")
        return RowSpan(self.array, self.start + begin, self.start + max(begin, end))
