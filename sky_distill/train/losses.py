"""Token losses on the response positions of a (possibly packed) micro batch.

The recipe asks a loss for *sums* over the micro batch's target tokens; it divides by the
target tokens of the whole global batch itself, so packing, accumulation and world size do
not change what is optimised. A loss sees the model and the collated batch:

    loss = build_loss(train)                      # from train.loss
    sums = loss(model, batch)                     # LossSums: total (backward) + named parts (logged)

Targets are the labels shifted by one (`next_token_targets`); every sequence's first label is
IGNORE_INDEX, so in a packed row no position predicts its neighbour's first token. The
distillation loss (`train/distill.py`, train.loss=distill) is another `TokenLoss`: it takes the
student's logits at `target_positions(batch)` and compares them with a teacher's (stored top-k
rows collated into the batch, or an online teacher run under `torch.no_grad()` on the same
inputs), returning its sums the same way.

With `fused` (train.fused_loss, the default) a loss never builds the `[tokens x vocab]` logits:
the model is run for its final hidden states only (`final_hidden`) and the output projection
and loss are applied in chunks (`train/fused_loss.py`), which keeps a 16K-token row with a
152K vocabulary within a few GiB. The unfused path is kept as the reference the tests compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from sky_distill.train.attention import varlen_keys
from sky_distill.train.data import IGNORE_INDEX
from sky_distill.train.fused_loss import chunked_head_loss

MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")
CHUNK_TOKENS = 4096  # target positions whose float32 log-softmax is held at once


@dataclass
class LossSums:
    """A micro batch's loss summed over its target tokens; `parts` are logged, not backpropagated."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


class TokenLoss(Protocol):
    name: str

    def __call__(self, model: Any, batch: dict[str, torch.Tensor]) -> LossSums: ...


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """What the model is called with. `use_cache=False` matters: a KV cache turns off
    transformers' packed-sequence masking, and packed neighbours would attend to each other.
    Packed rows (position ids, no padding mask) also carry their sequences' boundaries for
    variable-length attention (`attention.varlen_keys`; other attention ignores them)."""
    inputs = {key: batch[key] for key in MODEL_INPUTS if key in batch} | {"use_cache": False}
    if "position_ids" in batch and "attention_mask" not in batch:
        inputs |= varlen_keys(batch["position_ids"])
    return inputs


def next_token_targets(labels: torch.Tensor) -> torch.Tensor:
    """targets[:, t] = labels[:, t + 1]; the last position predicts nothing."""
    targets = torch.full_like(labels, IGNORE_INDEX)
    targets[:, :-1] = labels[:, 1:]
    return targets


def target_positions(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices of the positions that predict a response token, and those tokens."""
    targets = next_token_targets(batch["labels"]).reshape(-1)
    positions = (targets != IGNORE_INDEX).nonzero(as_tuple=True)[0]
    return positions, targets[positions]


def cross_entropy_sum(logits: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy at the given flat positions, in float32 chunks (never all logits at once)."""
    flat = logits.reshape(-1, logits.size(-1))
    total = flat.new_zeros((), dtype=torch.float32)
    for start in range(0, positions.numel(), CHUNK_TOKENS):
        chunk = flat.index_select(0, positions[start : start + CHUNK_TOKENS]).float()
        total = total + F.cross_entropy(chunk, targets[start : start + CHUNK_TOKENS], reduction="sum")
    return total


class UnsupportedHeadError(ValueError):
    """The model's logits are not `hidden @ lm_head.weight.T`, so they cannot be computed in chunks."""


def output_weight(model: Any) -> torch.Tensor:
    """The output projection's weight (`lm_head`, or the tied embedding) of a model or DeepSpeed engine."""
    module = getattr(model, "module", model)
    head = module.get_output_embeddings()
    config = module.config
    softcap = getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None)
    if getattr(head, "bias", None) is not None or softcap:
        raise UnsupportedHeadError(
            f"{type(module).__name__}: the output layer has a bias or scaled/soft-capped logits; "
            "set train.fused_loss=false"
        )
    return head.weight


def final_hidden(model: Any, batch: dict[str, torch.Tensor], **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """The final (normed) hidden states [B, L, d] and the model output, computing one position's logits only."""
    output = model(**model_inputs(batch), output_hidden_states=True, logits_to_keep=1, **kwargs)
    return output.hidden_states[-1], output


def hidden_at(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return hidden.reshape(-1, hidden.size(-1)).index_select(0, positions)


def cross_entropy_chunks(targets: torch.Tensor):
    """The per-chunk cross-entropy sum of `chunked_head_loss`."""
    return lambda logits, part: {"ce": F.cross_entropy(logits, targets[part], reduction="sum")}


class CrossEntropyLoss:
    """Next-token cross-entropy on the response tokens (supervised fine-tuning)."""

    name = "ce"

    def __init__(self, fused: bool = True):
        self.fused = fused

    def __call__(self, model: Any, batch: dict[str, torch.Tensor]) -> LossSums:
        positions, targets = target_positions(batch)
        if not self.fused:
            ce = cross_entropy_sum(model(**model_inputs(batch)).logits, positions, targets)
            return LossSums(total=ce, parts={"ce": ce.detach()})
        hidden, _ = final_hidden(model, batch)
        total, parts = chunked_head_loss(
            hidden_at(hidden, positions), output_weight(model), cross_entropy_chunks(targets), {"ce": 1.0}
        )
        return LossSums(total=total, parts=parts)


LOSSES: dict[str, type] = {"ce": CrossEntropyLoss}


FUSED_LOSS_MIN_VOCAB = 16384  # train.fused_loss=auto: fused from this vocabulary size on


def use_fused_loss(setting: bool | str, vocab_size: int) -> bool:
    """`train.fused_loss`: true or false as given; auto only where the logits are the memory problem.
    On a 261-token vocabulary the chunked path was 0-35% slower on CPU and saved nothing."""
    if setting == "auto":
        return vocab_size >= FUSED_LOSS_MIN_VOCAB
    return bool(setting)


def build_loss(name: str, fused: bool = True) -> TokenLoss:
    if name not in LOSSES:
        raise ValueError(f"train.loss {name!r} is not one of {', '.join(sorted(LOSSES))}")
    return LOSSES[name](fused=fused)
