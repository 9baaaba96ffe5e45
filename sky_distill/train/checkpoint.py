"""Checkpoints (DeepSpeed state + RNG + data position), resume, and the final HF export."""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sky_distill.runs import write_json_atomic
from sky_distill.train.distributed import barrier

log = logging.getLogger(__name__)
TAG_PREFIX = "step-"


def _tag(step: int) -> str:
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


def save(engine: Any, checkpoint_dir: str | Path, step: int, rank: int, keep_last: int) -> Path:
    """Save the state after `step` optimizer steps; mark it complete last; drop old ones."""
    root = Path(checkpoint_dir)
    tag = _tag(step)
    engine.save_checkpoint(str(root), tag=tag, client_state={"global_step": step})
    torch.save(_rng_state(), root / tag / f"rng_rank{rank}.pt")
    barrier()
    if rank == 0:
        write_json_atomic(root / tag / "COMPLETE", {"global_step": step})
        for old in saved_steps(root)[:-keep_last]:
            shutil.rmtree(root / _tag(old), ignore_errors=True)
    barrier()
    return root / tag


def resume(engine: Any, checkpoint_dir: str | Path, rank: int) -> int:
    """Load the newest complete checkpoint, if any; return the step to continue from."""
    steps = saved_steps(checkpoint_dir)
    if not steps:
        return 0
    tag = _tag(steps[-1])
    _, client_state = engine.load_checkpoint(str(checkpoint_dir), tag=tag)
    rng_file = Path(checkpoint_dir) / tag / f"rng_rank{rank}.pt"
    if rng_file.exists():
        _restore_rng(torch.load(rng_file, weights_only=False))
    step = int(client_state["global_step"])
    log.info("resumed from %s at step %d", tag, step)
    return step


def export_hf_model(engine: Any, tokenizer: Any, output_dir: str | Path, rank: int) -> Path:
    """Write a Hugging Face model (gathered from ZeRO-3 shards if needed) and its tokenizer."""
    output_dir = Path(output_dir)
    module = engine.module
    if engine.zero_optimization_stage() == 3:
        state_dict = engine._zero3_consolidated_16bit_state_dict()  # gathers on rank 0
    else:
        state_dict = module.state_dict() if rank == 0 else None
    if rank == 0:
        partial = output_dir.with_name(output_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        module.save_pretrained(str(partial), state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(str(partial))
        shutil.rmtree(output_dir, ignore_errors=True)
        partial.rename(output_dir)
    barrier()
    return output_dir
