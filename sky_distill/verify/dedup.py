"""Duplicate removal: identical traces of a problem, and near-duplicate problems (MinHash LSH). Pure.

Exact duplicates are responses to the same problem equal after whitespace and case folding
(sampling at low temperature repeats itself); the first by sample index is kept. Near-duplicate
problems (the same question reworded or re-sourced) are found by MinHash signatures over word
shingles, bucketed by LSH bands, and confirmed by the estimated Jaccard similarity; of each
group the problem with the smallest id is kept. Hashes are seeded and stable across processes.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from sky_distill.records import Trace

_PRIME = (1 << 31) - 1


def normalize_for_dedup(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def exact_duplicate_traces(traces: Sequence[Trace]) -> set[tuple[str, int]]:
    """Keys of traces whose normalized response repeats an earlier one of the same problem."""
    seen: set[tuple[str, str]] = set()
    duplicates: set[tuple[str, int]] = set()
    for trace in sorted(traces, key=lambda t: (t.problem_id, t.sample_index)):
        digest = hashlib.sha1(normalize_for_dedup(trace.response).encode()).hexdigest()
        if (trace.problem_id, digest) in seen:
            duplicates.add(trace.key)
        else:
            seen.add((trace.problem_id, digest))
    return duplicates


def shingles(text: str, size: int) -> set[str]:
    words = re.findall(r"\w+", text.lower())
    if len(words) <= size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


def _hash32(items: Iterable[str]) -> np.ndarray:
    return np.array(
        [int.from_bytes(hashlib.blake2b(item.encode(), digest_size=4).digest(), "little") for item in items],
        dtype=np.uint64,
    )


def minhash_signature(text: str, num_perm: int, shingle_size: int, seed: int = 0) -> np.ndarray:
    """`num_perm` minimum hashes of the text's shingles under seeded universal hashes (a*x + b) mod p.

    p = 2**31 - 1 and x, a, b < p, so a*x + b < 2**62 never overflows uint64.
    """
    generator = np.random.default_rng(seed)
    a = generator.integers(1, _PRIME, size=num_perm, dtype=np.uint64)
    b = generator.integers(0, _PRIME, size=num_perm, dtype=np.uint64)
    values = _hash32(shingles(text, shingle_size)) % np.uint64(_PRIME)
    if values.size == 0:
        return np.full(num_perm, _PRIME, dtype=np.uint64)
    return ((values[:, None] * a[None, :] + b[None, :]) % np.uint64(_PRIME)).min(axis=0)


def near_duplicate_groups(
    texts: dict[str, str], threshold: float = 0.8, num_perm: int = 64, shingle_size: int = 5, seed: int = 0
) -> list[list[str]]:
    """Groups (of two or more ids) whose texts are near duplicates (estimated Jaccard >= threshold)."""
    signatures = {key: minhash_signature(text, num_perm, shingle_size, seed) for key, text in texts.items()}
    return signature_groups(signatures, threshold)


def signature_groups(signatures: dict[str, np.ndarray], threshold: float = 0.8) -> list[list[str]]:
    """`near_duplicate_groups` from MinHash signatures alone (what a streaming caller keeps: no texts)."""
    if not signatures:
        return []
    num_perm = len(next(iter(signatures.values())))
    bands = _bands_for(threshold, num_perm)
    rows = num_perm // bands
    ids = sorted(signatures)
    parent = {key: key for key in ids}

    def find(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for band in range(bands):
        buckets: dict[bytes, list[str]] = defaultdict(list)
        for key in ids:
            buckets[signatures[key][band * rows : (band + 1) * rows].tobytes()].append(key)
        for members in buckets.values():
            first = members[0]
            for other in members[1:]:
                if find(first) != find(other) and np.mean(signatures[first] == signatures[other]) >= threshold:
                    parent[max(find(first), find(other))] = min(find(first), find(other))
    groups: dict[str, list[str]] = defaultdict(list)
    for key in ids:
        groups[find(key)].append(key)
    return [sorted(group) for group in groups.values() if len(group) > 1]


def _bands_for(threshold: float, num_perm: int) -> int:
    """LSH bands whose S-curve threshold (1/b)^(1/r) is closest to `threshold`, a little below it."""
    best, best_gap = 1, float("inf")
    for bands in range(1, num_perm + 1):
        if num_perm % bands:
            continue
        rows = num_perm // bands
        curve = (1 / bands) ** (1 / rows)
        gap = abs(curve - (threshold - 0.1))
        if gap < best_gap:
            best, best_gap = bands, gap
    return best


def near_duplicate_problems(texts: dict[str, str], **options) -> set[str]:
    """Ids to drop: every member of a near-duplicate group but the smallest id."""
    return {key for group in near_duplicate_groups(texts, **options) for key in group[1:]}
