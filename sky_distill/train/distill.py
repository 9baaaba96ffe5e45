"""The distillation `TokenLoss` (train.loss=distill): trace cross-entropy + KD + feature matching.

    loss = ce_weight * CE + kd_weight * D(teacher || student) + features.weight * feature loss

all summed over the response tokens of the packed micro batch (`losses.target_positions`), so
the recipe normalises them like the CE alone. The teacher is either *offline*, its stored
top-k log-probs collated into the batch (`teacher_ids`, `teacher_logprobs`, one row per target
position), or *online*, a model run under `no_grad` on the same packed inputs. Feature matching
needs the online teacher; a learned linear projection maps a student layer to the teacher's
width when they differ. The projections are a submodule of the student (`distill_projections`),
so DeepSpeed trains and checkpoints them with it; the export leaves them out.

With `fused` (train.fused_loss) CE and KD are computed together from the student's final hidden
states, chunk by chunk (`train/fused_loss.py`); an online teacher's logits are likewise made
per chunk from its hidden states, so neither side ever holds `[tokens x vocab]` logits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sky_distill.config import DistillConfig
from sky_distill.errors import SkyDistillError
from sky_distill.train.distill_losses import (
    dense_divergence_sum,
    dense_rows_sum,
    feature_loss_sum,
    sparse_divergence_sum,
    sparse_rows_sum,
)
from sky_distill.train.fused_loss import chunked_head_loss, teacher_logits_chunks, vocab_size
from sky_distill.train.losses import (
    LossSums,
    cross_entropy_chunks,
    cross_entropy_sum,
    final_hidden,
    hidden_at,
    model_inputs,
    output_weight,
    target_positions,
)

PROJECTIONS = "distill_projections"  # the student's submodule; state-dict keys with this prefix are not exported


class TeacherShapeError(SkyDistillError, ValueError):
    """Teacher and student outputs cannot be compared position by position."""


class TeacherTooLargeError(SkyDistillError, ValueError):
    """A full online-teacher replica per rank would not leave room for the student."""


TEACHER_SHARE = 0.35  # of a GPU's memory that a replicated online teacher's weights may take


def replica_problem(
    num_params: int, bytes_per_param: int, device_bytes: int, share: float = TEACHER_SHARE
) -> str | None:
    """Why a teacher of `num_params` cannot be replicated on a device of `device_bytes`, or None.

    Every rank holds the whole online teacher (it is not sharded), beside its share of the student,
    the optimizer and 16K-token activations: its weights may take `share` of the device.
    """
    need, limit = num_params * bytes_per_param, int(device_bytes * share)
    if need <= limit:
        return None
    largest = limit / bytes_per_param / 1e9
    return (
        f"the online teacher ({num_params / 1e9:.1f}B parameters, {need / 2**30:.0f} GiB) is replicated on every rank "
        f"and would take more than {share:.0%} of this GPU's {device_bytes / 2**30:.0f} GiB: online teachers up to "
        f"~{largest:.0f}B parameters fit here. Distil from a larger teacher offline: store its top-k log-probs "
        "while generating (generate.sampling.logprobs=k) and train with train.distill.teacher=offline"
    )


def count_teacher_parameters(path: str) -> int:
    """The teacher's parameter count from its config alone (built on the meta device, nothing loaded)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    return sum(parameter.numel() for parameter in model.parameters())


def load_teacher(path: str, dtype: torch.dtype, device: torch.device) -> Any:
    """The online teacher, frozen in eval mode on this rank's device (each rank holds a copy).

    Refused with `TeacherTooLargeError` on a GPU it does not fit (see `replica_problem`).
    Load it before the student: under ZeRO-3 a live `HfDeepSpeedConfig` would partition it too.
    """
    from transformers import AutoModelForCausalLM

    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        problem = replica_problem(count_teacher_parameters(path), torch.finfo(dtype).bits // 8, total)
        if problem:
            raise TeacherTooLargeError(f"{path}: {problem}")
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

    def __init__(self, config: DistillConfig, teacher: Any | None = None, fused: bool = True):
        if config.teacher == "online" and teacher is None:
            raise ValueError("an online distillation loss needs the teacher model")
        self.config = config
        self.teacher = teacher if config.teacher == "online" else None
        self.fused = fused

    def __call__(self, model: Any, batch: dict[str, torch.Tensor]) -> LossSums:
        return self._fused(model, batch) if self.fused else self._unfused(model, batch)

    def _fused(self, model: Any, batch: dict[str, torch.Tensor]) -> LossSums:
        config = self.config
        features = config.features.weight > 0
        hidden, output = final_hidden(model, batch)
        positions, targets = target_positions(batch)
        weight = output_weight(model)
        teacher_output, teacher_logits = None, None
        if self.teacher is not None:
            with torch.no_grad():
                teacher_hidden, teacher_output = final_hidden(self.teacher, batch)
            teacher_weight = output_weight(self.teacher)
            if vocab_size(teacher_weight) != vocab_size(weight):
                raise TeacherShapeError(
                    f"teacher vocabulary {vocab_size(teacher_weight)} vs student {vocab_size(weight)}: "
                    "the output vocabularies differ in size"
                )
            teacher_logits = teacher_logits_chunks(hidden_at(teacher_hidden, positions), teacher_weight)
        elif config.kd_weight > 0:
            self._check_offline(batch, positions)
        ce = cross_entropy_chunks(targets)

        def chunk_loss(logits: torch.Tensor, part: slice) -> dict[str, torch.Tensor]:
            sums = ce(logits, part) if config.ce_weight > 0 else {}
            if config.kd_weight > 0 and teacher_logits is not None:
                sums["kd"] = dense_rows_sum(logits, teacher_logits(part), config.kind, config.temperature, config.beta)
            elif config.kd_weight > 0:
                ids, logprobs = batch["teacher_ids"][part], batch["teacher_logprobs"][part]
                sums["kd"] = sparse_rows_sum(logits, ids, logprobs, config.kind, config.temperature, config.beta)
            return sums

        weights = {name: w for name, w in (("ce", config.ce_weight), ("kd", config.kd_weight)) if w > 0}
        total = hidden.new_zeros((), dtype=torch.float32)
        parts: dict[str, torch.Tensor] = {}
        if weights:
            total, parts = chunked_head_loss(hidden_at(hidden, positions), weight, chunk_loss, weights)
        if features:
            feature = self._feature_sum(model, output.hidden_states, teacher_output.hidden_states, positions)
            total, parts["feature"] = total + config.features.weight * feature, feature.detach()
        return LossSums(total=total, parts=parts)

    @staticmethod
    def _check_offline(batch: dict, positions: torch.Tensor) -> None:
        if "teacher_ids" not in batch:
            raise ValueError("offline distillation needs the batch's teacher_ids and teacher_logprobs")
        if batch["teacher_ids"].shape[0] != positions.numel():
            raise TeacherShapeError(
                f"{batch['teacher_ids'].shape[0]} teacher rows for {positions.numel()} target positions"
            )

    def _unfused(self, model: Any, batch: dict[str, torch.Tensor]) -> LossSums:
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
            self._check_offline(batch, positions)
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
