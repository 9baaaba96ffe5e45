"""Checkpoints (DeepSpeed state + RNG + data position), resume, and the final HF export.

A checkpoint `checkpoints/step-NNNNNNNN/` holds DeepSpeed's model, optimizer and scheduler
state (each rank's ZeRO shards), every rank's RNG states, and in its client state the data
position (the global step; the schedule is a pure function of it), the world size and a
fingerprint of the packed data. It counts only once `COMPLETE` is written, after every rank
has saved; a half-written checkpoint from a killed run is ignored and removed on resume.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sky_distill.errors import SkyDistillError
from sky_distill.runs import write_json_atomic
from sky_distill.train.distributed import barrier

log = logging.getLogger(__name__)
TAG_PREFIX = "step-"


class CheckpointMismatchError(SkyDistillError):
    """The checkpoint to resume from was written by a run with other data or another world size."""


def tag(step: int) -> str:
    return f"{TAG_PREFIX}{step:08d}"


def saved_steps(checkpoint_dir: str | Path) -> list[int]:
    """Steps of the complete checkpoints in `checkpoint_dir`, oldest first."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    steps = []
    for entry in root.iterdir():
        if entry.name.startswith(TAG_PREFIX) and (entry / "COMPLETE").exists():
            steps.append(int(entry.name.removeprefix(TAG_PREFIX)))
    return sorted(steps)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(
    engine: Any, checkpoint_dir: str | Path, step: int, rank: int, keep_last: int, client_state: dict[str, Any]
) -> Path:
    """Save the state after `step` optimizer steps (every rank calls this); mark it complete; drop old ones."""
    root = Path(checkpoint_dir)
    name = tag(step)
    engine.save_checkpoint(str(root), tag=name, client_state={**client_state, "global_step": step})
    torch.save(_rng_state(), root / name / f"rng_rank{rank}.pt")
    barrier()
    if rank == 0:
        write_json_atomic(root / name / "COMPLETE", {"global_step": step, **client_state})
        for old in saved_steps(root)[:-keep_last]:
            shutil.rmtree(root / tag(old), ignore_errors=True)
        log.info("checkpoint %s saved", root / name)
    barrier()
    return root / name


def remove_incomplete(checkpoint_dir: str | Path) -> list[str]:
    """Delete checkpoint folders without COMPLETE (a save cut short by a kill); rank 0 only."""
    root = Path(checkpoint_dir)
    removed = []
    if root.is_dir():
        for entry in root.iterdir():
            if entry.is_dir() and entry.name.startswith(TAG_PREFIX) and not (entry / "COMPLETE").exists():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
    return removed


def resume(engine: Any, checkpoint_dir: str | Path, rank: int, expected: dict[str, Any]) -> int:
    """Load the newest complete checkpoint, if any; return the step to continue from.

    `expected` holds what must match (world size, data fingerprint); a mismatch is an error,
    not a silent restart from a different point of a different schedule.
    """
    steps = saved_steps(checkpoint_dir)
    if not steps:
        return 0
    name = tag(steps[-1])
    from sky_distill.runs import read_json

    saved = read_json(Path(checkpoint_dir) / name / "COMPLETE")
    for key, value in expected.items():
        if key in saved and saved[key] != value:
            raise CheckpointMismatchError(
                f"cannot resume from {Path(checkpoint_dir) / name}: it was saved with {key}={saved[key]!r}, "
                f"this run has {value!r}; use the same data and number of ranks, or a new train.name"
            )
    load_path, client_state = engine.load_checkpoint(str(checkpoint_dir), tag=name)
    if load_path is None:
        raise CheckpointMismatchError(f"DeepSpeed could not load the checkpoint {Path(checkpoint_dir) / name}")
    rng_file = Path(checkpoint_dir) / name / f"rng_rank{rank}.pt"
    if rng_file.exists():
        _restore_rng(torch.load(rng_file, weights_only=False))
    step = int(client_state["global_step"])
    log.info("resumed from %s at step %d", name, step)
    return step


def export_hf_model(
    engine: Any, tokenizer: Any, output_dir: str | Path, rank: int, stop_token_ids: list[int] | None = None
) -> Path:
    """Write a Hugging Face model (gathered from ZeRO-3 shards if needed) and its tokenizer.

    Every rank must call this (ZeRO-3 gathers collectively). `stop_token_ids` (the learned
    end-of-turn tokens) go into the generation config, so generation stops where training taught it.
    """
    output_dir = Path(output_dir)
    module = engine.module
    if engine.zero_optimization_stage() == 3:
        state_dict = engine._zero3_consolidated_16bit_state_dict()  # gathers layer by layer onto rank 0
    else:
        state_dict = module.state_dict() if rank == 0 else None
    if rank == 0:
        partial = output_dir.with_name(output_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        if stop_token_ids:
            eos = module.generation_config.eos_token_id
            eos = [eos] if isinstance(eos, int) else list(eos or [])
            module.generation_config.eos_token_id = sorted(set(eos) | set(stop_token_ids))
            module.config.use_cache = True
        from sky_distill.train.distill import exported_state_dict

        state_dict = exported_state_dict(state_dict if state_dict is not None else module.state_dict())
        module.save_pretrained(str(partial), state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(str(partial))
        shutil.rmtree(output_dir, ignore_errors=True)
        partial.rename(output_dir)
    barrier()
    return output_dir
