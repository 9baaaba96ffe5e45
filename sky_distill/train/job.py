"""A fully resolved training job: what every rank reads, so all ranks agree on everything.

The launcher writes `job.json` into the output directory once; ranks started by torchrun (or
srun) load it instead of re-resolving Hydra config, so timestamps or environment differences
between ranks and nodes cannot make them disagree about paths or hyperparameters.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import Field

from sky_distill.config import ConfigModel, LoggerConfig, TrainConfig
from sky_distill.train.batching import BatchPlan

JOB_FILE = "job.json"


class TrainJob(ConfigModel):
    train: TrainConfig
    zero: dict[str, Any] = Field(default_factory=lambda: {"stage": 2})  # the deepspeed/ group's zero_optimization
    data_files: list[str] = Field(min_length=1)
    teacher_topk_dirs: list[str] = Field(default_factory=list)  # offline distillation: the top-k stores
    output_dir: str
    logger: LoggerConfig = LoggerConfig()
    provenance: dict[str, Any] = Field(default_factory=dict)

    def write(self, directory: str | Path | None = None) -> Path:
        from sky_distill.runs import write_json_atomic

        path = Path(directory or self.output_dir) / JOB_FILE
        write_json_atomic(path, self.model_dump(mode="json"))
        return path

    @classmethod
    def read(cls, path: str | Path) -> TrainJob:
        from sky_distill.runs import read_json

        return cls.model_validate(read_json(path))


def resolve_precision(precision: str, cuda_available: bool, bf16_supported: bool) -> str:
    """`auto` picks bf16 on GPUs that support it, fp16 on older GPUs and fp32 on CPU."""
    if precision != "auto":
        return precision
    if not cuda_available:
        return "fp32"
    return "bf16" if bf16_supported else "fp16"


def render_deepspeed_config(
    train: TrainConfig, zero: dict[str, Any], plan: BatchPlan, precision: str
) -> dict[str, Any]:
    """The DeepSpeed config: batch keys, clipping and precision from the train config, ZeRO from its group."""
    config: dict[str, Any] = {
        "train_batch_size": plan.global_batch_size,
        "train_micro_batch_size_per_gpu": plan.micro_batch_size,
        "gradient_accumulation_steps": plan.gradient_accumulation_steps,
        "gradient_clipping": train.max_grad_norm,
        "zero_optimization": copy.deepcopy(zero),
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if precision == "bf16":
        config["bf16"] = {"enabled": True}
    elif precision == "fp16":
        config["fp16"] = {"enabled": True, "initial_scale_power": 16}
    return config


def zero_stage(zero: dict[str, Any]) -> int:
    return int(zero.get("stage", 0))


def uses_optimizer_offload(zero: dict[str, Any]) -> bool:
    offload = zero.get("offload_optimizer") or {}
    return offload.get("device", "none") not in ("none", None)
