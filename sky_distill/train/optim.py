"""AdamW with decoupled weight decay, and a warmup + cosine/linear/constant learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from sky_distill.config import TrainConfig

SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


def parameter_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices; never biases or norm weights."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim < 2 or "norm" in name.lower() else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_steps(train: TrainConfig, num_training_steps: int) -> int:
    return math.ceil(train.warmup_ratio * num_training_steps)


def build_optimizer(
    model: Any, train: TrainConfig, num_training_steps: int, offload_optimizer: bool
) -> tuple[Any, Callable[[Any], Any]]:
    """The optimizer and a scheduler factory (DeepSpeed calls it with its own ZeRO optimizer).

    With the optimizer state offloaded to CPU, ZeRO steps it on the CPU: DeepSpeedCPUAdam (a
    C++ op built on first use) in AdamW mode, the same update as `torch.optim.AdamW`.
    """
    from transformers import get_scheduler

    groups = parameter_groups(model, train.weight_decay)
    betas = (train.adam_beta1, train.adam_beta2)
    if offload_optimizer:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        optimizer = DeepSpeedCPUAdam(
            groups, lr=train.learning_rate, betas=betas, eps=train.adam_epsilon, adamw_mode=True
        )
    else:
        optimizer = torch.optim.AdamW(groups, lr=train.learning_rate, betas=betas, eps=train.adam_epsilon)
    warmup = warmup_steps(train, num_training_steps)

    def make_scheduler(wrapped_optimizer: Any) -> Any:
        return get_scheduler(
            SCHEDULERS[train.lr_scheduler],
            wrapped_optimizer,
            num_warmup_steps=warmup,
            num_training_steps=num_training_steps,
        )

    return optimizer, make_scheduler
