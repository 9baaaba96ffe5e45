"""The on-policy distillation `TokenLoss` (train.loss=on_policy): the student learns on its own samples.

For a sampled token y_t the teacher's and the sampling student's log-probs give a dense, detached
advantage, and the current student's log-prob an importance ratio (the samples were drawn by the
weights the round started from, `old`):

    A_t     = log p_teacher(y_t) - log p_old(y_t)  (+ reward_weight * correct, verifier=reward)
    ratio_t = exp(log p_new(y_t) - log p_old(y_t))
    loss    = reverse_kl_weight * sum_t -min(ratio_t A_t, clip(ratio_t, 1 - c, 1 + c) A_t)   (c: clip_ratio)
            + kd_weight * D_kd(teacher top-k || student)  +  ce_weight * CE on verified samples

At the sampling weights (ratio 1) the gradient of the first term, -A_t grad log p(y_t), is the
per-token policy gradient of the reverse KL(student || teacher) (MiniLLM, Gu et al. 2024; Thinking
Machines' on-policy distillation, 2025). A student identical to its teacher has A = 0: zero loss
and zero gradient. The logged `reverse_kl` is sum_t (log p_old - log p_teacher), the sampled
estimate of that KL. Sums over target positions, normalised by the recipe like every loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sky_distill.config import OnPolicyConfig
from sky_distill.train.distill_losses import sparse_rows_sum
from sky_distill.train.fused_loss import chunked_head_loss
from sky_distill.train.losses import LossSums, final_hidden, hidden_at, model_inputs, output_weight, target_positions

SCORE_KEYS = ("old_logprobs", "teacher_token_logprobs", "correct")  # per target token, collated with the batch


def sampled_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] per row ([n, V] and [n]), in float32."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def policy_gradient_sum(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    correct: torch.Tensor | None = None,
    reward_weight: float = 0.0,
    clip: float | None = None,
) -> torch.Tensor:
    """sum_t -exp(new - old) * A_t with A_t = teacher - old (+ reward_weight * correct), A detached;
    with `clip`, PPO's pessimistic bound: -min(ratio A, clamp(ratio, 1 - clip, 1 + clip) A)."""
    advantage = (teacher_logprobs - old_logprobs).detach()
    if correct is not None and reward_weight:
        advantage = advantage + reward_weight * correct
    ratio = torch.exp(new_logprobs - old_logprobs.detach())
    surrogate = ratio * advantage
    if clip is not None:
        surrogate = torch.minimum(surrogate, ratio.clamp(1 - clip, 1 + clip) * advantage)
    return -surrogate.sum()


def reverse_kl_estimate_sum(old_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor) -> torch.Tensor:
    """sum_t log p_old(y_t) - log p_teacher(y_t): the sampled estimate of KL(student || teacher)."""
    return (old_logprobs - teacher_logprobs).sum()


@dataclass(frozen=True)
class TokenScores:
    """One sample's per-token scores: the teacher's top-k rows (`ids`/`logprobs` [n, k], k may be 0,
    collated by `data.collate_teacher`), and per token the sampling student's and the teacher's
    log-prob of the sampled token and whether the verifier accepted the sample (1/0)."""

    ids: np.ndarray
    logprobs: np.ndarray
    old: np.ndarray
    teacher: np.ndarray
    correct: np.ndarray


def collate_scores(examples: Sequence[Any]) -> dict[str, torch.Tensor]:
    """The per-token scores of a micro batch's examples, in `losses.target_positions` order."""
    scores = [example.teacher for example in examples]
    return {
        "old_logprobs": torch.from_numpy(np.concatenate([s.old for s in scores]).astype(np.float32)),
        "teacher_token_logprobs": torch.from_numpy(np.concatenate([s.teacher for s in scores]).astype(np.float32)),
        "correct": torch.from_numpy(np.concatenate([s.correct for s in scores]).astype(np.float32)),
    }


class ScoreShapeError(ValueError):
    """The collated scores do not line up with the batch's target positions."""


class OnPolicyLoss:
    name = "on_policy"

    def __init__(self, config: OnPolicyConfig, fused: bool = True):
        self.config = config
        self.fused = fused

    collate = staticmethod(collate_scores)

    def weights(self) -> dict[str, float]:
        config = self.config
        named = (("pg", config.reverse_kl_weight), ("kd", config.kd_weight), ("ce", config.ce_weight))
        return {name: weight for name, weight in named if weight > 0}

    def chunk_terms(self, batch: dict[str, torch.Tensor], targets: torch.Tensor):
        """The per-chunk sums of each term, from the student's float32 logits at target rows `part`."""
        config = self.config
        old, teacher, correct = (batch[key] for key in SCORE_KEYS)

        def terms(logits: torch.Tensor, part: slice) -> dict[str, torch.Tensor]:
            sums: dict[str, torch.Tensor] = {}
            new = sampled_logprobs(logits, targets[part])
            if config.reverse_kl_weight > 0:
                reward = config.reward_weight if config.verifier == "reward" else 0.0
                sums["pg"] = policy_gradient_sum(
                    new, old[part], teacher[part], correct[part], reward, config.clip_ratio
                )
            if config.kd_weight > 0:
                ids, logprobs = batch["teacher_ids"][part], batch["teacher_logprobs"][part]
                sums["kd"] = sparse_rows_sum(logits, ids, logprobs, config.kd_kind, 1.0, config.beta)
            if config.ce_weight > 0:
                sums["ce"] = -(new * correct[part]).sum()
            return sums

        return terms

    def __call__(self, model: Any, batch: dict[str, torch.Tensor]) -> LossSums:
        positions, targets = target_positions(batch)
        if batch["old_logprobs"].shape[0] != positions.numel():
            raise ScoreShapeError(f"{batch['old_logprobs'].shape[0]} scored tokens for {positions.numel()} targets")
        terms, weights = self.chunk_terms(batch, targets), self.weights()
        if self.fused:
            hidden, _ = final_hidden(model, batch)
            total, parts = chunked_head_loss(hidden_at(hidden, positions), output_weight(model), terms, weights)
        else:
            logits = model(**model_inputs(batch)).logits
            rows = logits.reshape(-1, logits.size(-1)).index_select(0, positions).float()
            sums = terms(rows, slice(0, positions.numel()))
            total = sum(weights[name] * sums[name] for name in weights)
            parts = {name: value.detach() for name, value in sums.items()}
        parts["reverse_kl"] = reverse_kl_estimate_sum(batch["old_logprobs"], batch["teacher_token_logprobs"])
        return LossSums(total=total, parts=parts)
