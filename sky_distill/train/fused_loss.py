"""Losses computed from the final hidden states in chunks: never more than `chunk x vocab` logits.

The unfused losses (`losses.cross_entropy_sum`, `distill_losses.*_divergence_sum`) take the
model's `[tokens x vocab]` logits, which at 16K tokens and Qwen2.5's 152,064-token vocabulary
are several GiB before their gradient. Here the output projection is applied chunk by chunk
inside one autograd function: each chunk's logits, its loss and the gradient of that loss with
respect to the logits exist only while the chunk is processed (its gradient is folded into the
gradients of the hidden states and of the `lm_head` weight at once), so forward and backward
together hold one chunk's logits, plus `[tokens x hidden]` and `[vocab x hidden]` gradients.

A chunk's loss is any function of its logits (`ChunkLoss`), so every loss (cross-entropy,
dense and sparse divergences) is the same per-row code the unfused path runs, on fewer rows:
the values and gradients agree with the unfused ones up to float summation order.

Under ZeRO-3 the `lm_head` weight is partitioned outside its module's forward; it is gathered
for the computation (`deepspeed.zero.GatheredParameters`) and its gradient returned full-size,
as a linear layer's backward would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

CHUNK_ELEMENTS = 2**25  # logits held at once on CPU: 220 rows of a 152K vocabulary, 128 MiB in float32
CUDA_CHUNK_ELEMENTS = 2**28  # on a GPU: 1,765 rows, 1 GiB; small chunks leave its matrix units idle

# (chunk logits [c, V] in float32 (float64 for a float64 head), the chunk's row slice) -> named loss sums of the chunk
ChunkLoss = Callable[[torch.Tensor, slice], dict[str, torch.Tensor]]


def chunk_rows(vocab_size: int, chunk_elements: int | None = None) -> int:
    return max(1, (chunk_elements or CHUNK_ELEMENTS) // vocab_size)


def vocab_size(weight: torch.Tensor) -> int:
    """Rows of an output projection, also when ZeRO-3 has partitioned it (`ds_shape`)."""
    return int(getattr(weight, "ds_shape", weight.shape)[0])


def gathered(weight: torch.Tensor):
    """The full weight for the duration of the block under ZeRO-3; a no-op otherwise."""
    if not hasattr(weight, "ds_id"):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters([weight], modifier_rank=None)


class _ChunkedHeadLoss(torch.autograd.Function):
    """sum_i weights[name] * parts[name] over chunks of rows of `hidden @ weight.T`."""

    @staticmethod
    def forward(ctx, hidden, weight, chunk_loss, weights, rows, need_grad):
        names = list(weights)
        exact = torch.float64 if weight.dtype == torch.float64 else torch.float32  # logits and sums
        parts = torch.zeros(len(names), dtype=exact, device=hidden.device)
        grad_hidden = torch.zeros_like(hidden, dtype=exact) if need_grad else None
        grad_weight = None
        with gathered(weight):
            full = weight.detach()
            if need_grad:
                grad_weight = torch.zeros(full.shape, dtype=exact, device=full.device)
            for start in range(0, hidden.size(0), rows):
                part = slice(start, start + rows)
                chunk = hidden[part].detach()
                with torch.enable_grad():
                    logits = (chunk @ full.T).to(exact).requires_grad_(need_grad)
                    sums = chunk_loss(logits, part)
                    total = sum(weights[name] * sums[name] for name in names)
                    if need_grad:
                        (grad_logits,) = torch.autograd.grad(total, logits)
                with torch.no_grad():
                    parts += torch.stack([sums[name].detach().to(exact) for name in names])
                    if need_grad:
                        grad_logits = grad_logits.to(full.dtype)
                        grad_hidden[part] = (grad_logits @ full).to(exact)
                        if full.dtype == exact:
                            grad_weight.addmm_(grad_logits.T, chunk.to(exact))
                        else:  # bf16 on tensor cores (float32 accumulation inside), summed in float32
                            grad_weight += (grad_logits.T @ chunk.to(full.dtype)).to(exact)
                del logits, sums, total
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        total = (parts * parts.new_tensor([weights[name] for name in names])).sum()
        ctx.mark_non_differentiable(parts)
        return total, parts

    @staticmethod
    def backward(ctx, grad_total, _grad_parts):
        grad_hidden, grad_weight = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        return (
            (grad_hidden * grad_total).to(hidden_dtype),
            (grad_weight * grad_total).to(weight_dtype),
            None,
            None,
            None,
            None,
        )


def chunked_head_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    chunk_loss: ChunkLoss,
    weights: dict[str, float],
    rows: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted total (differentiable w.r.t. `hidden` [N, d] and `weight` [V, d]) and the
    detached named parts of `chunk_loss` summed over chunks of `rows` rows of `hidden @ weight.T`."""
    rows = rows or chunk_rows(vocab_size(weight), CUDA_CHUNK_ELEMENTS if hidden.is_cuda else None)
    need_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    total, parts = _ChunkedHeadLoss.apply(hidden, weight, chunk_loss, weights, rows, need_grad)
    return total, {name: parts[index] for index, name in enumerate(weights)}


def teacher_logits_chunks(teacher_hidden: torch.Tensor, teacher_weight: torch.Tensor):
    """A function of a row slice giving the teacher's float32 logits for those rows (no grad)."""

    def logits(part: slice) -> torch.Tensor:
        with torch.no_grad(), gathered(teacher_weight):
            return (teacher_hidden[part] @ teacher_weight.T).float()

    return logits
