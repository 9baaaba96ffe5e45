"""The distillation `TokenLoss` (train.loss=distill): trace cross-entropy + KD + feature matching.

    loss = ce_weight * CE + kd_weight * D(teacher || student) + features.weight * feature loss

all summed over the response tokens of the packed micro batch (`losses.target_positions`), so
the recipe normalises them like the CE alone. The teacher is either *offline*, its stored
top-k log-probs collated into the batch (`teacher_ids`, `teacher_logprobs`, one row per target
position), or *online*, a model run under `no_grad` on the same packed inputs. Feature matching
needs the online teacher; a learned linear projection maps a student layer to the teacher's
width when they differ. The projections are a submodule of the student (`distill_projections`),
so DeepSpeed trains and checkpoints them with it; the export leaves them out.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sky_distill.config import DistillConfig
from sky_distill.errors import SkyDistillError
from sky_distill.train.distill_losses import dense_divergence_sum, feature_loss_sum, sparse_divergence_sum
from sky_distill.train.losses import LossSums, cross_entropy_sum, model_inputs, target_positions

PROJECTIONS = "distill_projections"  # the student's submodule; state-dict keys with this prefix are not exported


class TeacherShapeError(SkyDistillError, ValueError):
    """Teacher and student outputs cannot be compared position by position."""


def load_teacher(path: str, dtype: torch.dtype, device: torch.device) -> Any:
    """The online teacher, frozen in eval mode on this rank's device (each rank holds a copy).

    Load it before the student: under ZeRO-3 a live `HfDeepSpeedConfig` would partition it too.
    """
    from transformers import AutoModelForCausalLM

    teacher = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    teacher.config.use_cache = False
    return teacher.eval().requires_grad_(False).to(device)


def attach_projections(student: nn.Module, teacher_width: int, layers: list[tuple[int, int]]) -> nn.ModuleList:
    """One projection per matched layer pair: linear student width -> teacher width, or identity if equal."""
    width = student.config.hidden_size
    projections = nn.ModuleList(
        [nn.Identity() if width == teacher_width else nn.Linear(width, teacher_width, bias=False) for _ in layers]
    )
    student.add_module(PROJECTIONS, projections)
    return projections


def exported_state_dict(state_dict: dict[str, Any] | None) -> dict[str, Any] | None:
    """The student's weights without distillation-only modules."""
    if state_dict is None:
        return None
    return {key: value for key, value in state_dict.items() if not key.startswith(PROJECTIONS + ".")}


class DistillLoss:
    name = "distill"

    def __init__(self, config: DistillConfig, teacher: Any | None = None):
        if config.teacher == "online" and teacher is None:
            raise ValueError("an online distillation loss needs the teacher model")
        self.config = config
        self.teacher = teacher if config.teacher == "online" else None

    def __call__(self, model: Any, batch: dict[str, torch.Tensor]) -> LossSums:
        config = self.config
        features = config.features.weight > 0
        output = model(**model_inputs(batch), output_hidden_states=features)
        positions, targets = target_positions(batch)
        total = output.logits.new_zeros((), dtype=torch.float32)
        parts: dict[str, torch.Tensor] = {}
        if config.ce_weight > 0:
            ce = cross_entropy_sum(output.logits, positions, targets)
            total, parts["ce"] = total + config.ce_weight * ce, ce.detach()
        teacher_output = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher_output = self.teacher(**model_inputs(batch), output_hidden_states=features)
        if config.kd_weight > 0:
            kd = self._kd_sum(output.logits, teacher_output, positions, batch)
            total, parts["kd"] = total + config.kd_weight * kd, kd.detach()
        if features:
            feature = self._feature_sum(model, output.hidden_states, teacher_output.hidden_states, positions)
            total, parts["feature"] = total + config.features.weight * feature, feature.detach()
        return LossSums(total=total, parts=parts)

    def _kd_sum(self, logits: torch.Tensor, teacher_output: Any, positions: torch.Tensor, batch: dict) -> torch.Tensor:
        config = self.config
        if teacher_output is None:
            if "teacher_ids" not in batch:
                raise ValueError("offline distillation needs the batch's teacher_ids and teacher_logprobs")
            if batch["teacher_ids"].shape[0] != positions.numel():
                raise TeacherShapeError(
                    f"{batch['teacher_ids'].shape[0]} teacher rows for {positions.numel()} target positions"
                )
            return sparse_divergence_sum(
                logits,
                positions,
                batch["teacher_ids"],
                batch["teacher_logprobs"],
                config.kind,
                config.temperature,
                config.beta,
            )
        if teacher_output.logits.shape != logits.shape:
            raise TeacherShapeError(
                f"teacher logits {tuple(teacher_output.logits.shape)} vs student {tuple(logits.shape)}: "
                "the output vocabularies differ in size"
            )
        return dense_divergence_sum(
            logits, teacher_output.logits, positions, config.kind, config.temperature, config.beta
        )

    def _feature_sum(self, model: Any, student_hidden: tuple, teacher_hidden: tuple, positions: torch.Tensor):
        projections = getattr(getattr(model, "module", model), PROJECTIONS)
        total = student_hidden[0].new_zeros((), dtype=torch.float32)
        for projection, (student_layer, teacher_layer) in zip(projections, self.config.features.layers):
            student = student_hidden[student_layer].reshape(-1, student_hidden[student_layer].size(-1))
            teacher = teacher_hidden[teacher_layer].reshape(-1, teacher_hidden[teacher_layer].size(-1))
            projected = projection(student.index_select(0, positions))
            total = total + feature_loss_sum(projected, teacher.index_select(0, positions), self.config.features.kind)
        return total
