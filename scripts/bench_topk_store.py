"""Bytes per token of the stored top-k log-probs of a run, against the raw arrays and JSON.

    python scripts/bench_topk_store.py [runs/demo]

Reads `<run>/generate/shards/*.topk/chunk-*.npz` (written by `sky-distill generate` with
`generate.sampling.logprobs=k`) and prints, per sampled token: the compressed store on disk,
the same arrays uncompressed (k x (int32 id + float16 log-prob) + the int32 sampled id), and the
JSON the trace lines would hold instead ({"id": log-prob, ...} per token).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from sky_distill.generate.topk_store import CHUNK_GLOB, store_bytes_per_token, store_directories


def json_bytes(directories: list[Path]) -> int:
    """What the rows would take as the trace JSON field `logprobs` (float32 values as Python prints them)."""
    size = 0
    for directory in directories:
        for path in directory.glob(CHUNK_GLOB):
            with np.load(path) as chunk:
                for ids, values in zip(chunk["ids"], chunk["logprobs"].astype(np.float32)):
                    size += len(json.dumps({str(int(i)): float(v) for i, v in zip(ids, values) if i >= 0}))
    return size


def main() -> None:
    run_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
    directories = store_directories(run_dir / "generate" / "shards")
    if not directories:
        sys.exit(f"no top-k store under {run_dir}/generate/shards (generate with generate.sampling.logprobs=k)")
    size, tokens = store_bytes_per_token(directories)
    with np.load(next(directories[0].glob(CHUNK_GLOB))) as chunk:
        k = chunk["ids"].shape[1]
    raw = k * (4 + 2) + 4
    print(f"{tokens} sampled tokens, k={k}, {len(directories)} shard store(s)")
    print(f"store on disk (npz, zlib): {size / tokens:.1f} bytes/token ({size} bytes)")
    print(f"uncompressed arrays:       {raw} bytes/token")
    print(f"as JSON in traces.jsonl:   {json_bytes(directories) / tokens:.1f} bytes/token")


if __name__ == "__main__":
    main()
