"""Distillation divergences between a teacher's and the student's next-token distributions. Pure.

Every function takes flat logits (or log-probs) at the target positions of a packed micro batch
(`losses.target_positions`) and returns a *sum* over those positions, like `cross_entropy_sum`,
computed in float32 chunks of `CHUNK_TOKENS` positions.

Divergences of teacher P and student Q, both softened by the temperature T and scaled by T^2
(Hinton et al. 2015: keeps gradient magnitudes comparable across T):
    forward_kl  KL(P || Q)                    mean-seeking, the classic soft-target loss
    reverse_kl  KL(Q || P)                    mode-seeking
    jsd         [b KL(P||M) + (1-b) KL(Q||M)] / (b (1-b)),  M = b P + (1-b) Q
                (generalized JSD of GKD, Agarwal et al. 2024, divided by b(1-b) so that it is
                continuous in b: b -> 0 is forward KL and b -> 1 reverse KL, the values at 0 and 1)
    tv          (1/2) sum |P - Q|

Sparse teachers (`sparse_divergence_sum`) give only their top-k log-probs. The probability they
leave out goes into one extra "other" bucket, for the teacher (1 - sum of its top-k) and for the
student (its mass outside the teacher's top-k ids): both distributions are coarsened the same
way, so the loss is an exact divergence between two distributions over k + 1 outcomes, never
exceeds the dense one (data processing), and does not pretend the teacher is surer than it
was, as renormalising over the top-k would. The temperature is applied to the k + 1 buckets of
both sides alike; when the top-k covers the vocabulary this is exactly the dense loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CHUNK_TOKENS = 4096  # target positions whose float32 distributions are held at once
KINDS = ("forward_kl", "reverse_kl", "jsd", "tv")
TAIL_FLOOR = 1e-8  # least teacher "other" mass: a top-k summing to 1 (float16 rounding) keeps reverse KL finite


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(A || B) per row, with 0 log 0 = 0 (also in the gradient: no 0 * nan where both are -inf)."""
    difference = torch.where(torch.isneginf(log_a), torch.zeros_like(log_a), log_a - log_b)
    return (log_a.exp() * difference).sum(-1)


def divergence(log_p: torch.Tensor, log_q: torch.Tensor, kind: str, beta: float = 0.5) -> torch.Tensor:
    """Per-row divergence of teacher log-probs `log_p` and student log-probs `log_q` (last dim normalised)."""
    if kind == "forward_kl" or (kind == "jsd" and beta == 0):
        return _kl(log_p, log_q)
    if kind == "reverse_kl" or (kind == "jsd" and beta == 1):
        return _kl(log_q, log_p)
    if kind == "jsd":
        neither = torch.isneginf(log_p) & torch.isneginf(log_q)  # padding: keep nan out of the gradient
        safe_p, safe_q = log_p.masked_fill(neither, 0.0), log_q.masked_fill(neither, 0.0)
        log_m = torch.logaddexp(safe_p + math.log(beta), safe_q + math.log(1 - beta)).masked_fill(neither, -math.inf)
        return (beta * _kl(log_p, log_m) + (1 - beta) * _kl(log_q, log_m)) / (beta * (1 - beta))
    if kind == "tv":
        return 0.5 * (log_p.exp() - log_q.exp()).abs().sum(-1)
    raise ValueError(f"unknown divergence {kind!r}; one of {', '.join(KINDS)}")


def _chunks(positions: torch.Tensor):
    for start in range(0, positions.numel(), CHUNK_TOKENS):
        yield slice(start, start + CHUNK_TOKENS), positions[start : start + CHUNK_TOKENS]


def _tempered_divergence_sum(log_p: torch.Tensor, log_q: torch.Tensor, kind: str, temperature: float, beta: float):
    """Both sides softened by T (log-softmax of scores / T), the divergence summed over rows."""
    log_p = F.log_softmax(log_p / temperature, dim=-1)
    log_q = F.log_softmax(log_q / temperature, dim=-1)
    return divergence(log_p, log_q, kind, beta).sum()


def dense_divergence_sum(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    positions: torch.Tensor,
    kind: str,
    temperature: float = 1.0,
    beta: float = 0.5,
) -> torch.Tensor:
    """Summed divergence at flat `positions` of two [..., V] logit tensors (same vocabulary)."""
    student = student_logits.reshape(-1, student_logits.size(-1))
    teacher = teacher_logits.reshape(-1, teacher_logits.size(-1))
    total = student.new_zeros((), dtype=torch.float32)
    for _, rows in _chunks(positions):
        log_p, log_q = teacher.index_select(0, rows).float(), student.index_select(0, rows).float()
        total = total + _tempered_divergence_sum(log_p, log_q, kind, temperature, beta)
    return total * temperature**2


def bucket_log_probs(
    student_logits: torch.Tensor, teacher_ids: torch.Tensor, teacher_logprobs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher and student log-probs over the teacher's top-k ids plus one "other" bucket: [N, k + 1].

    `teacher_ids` < 0 are padding (a position with fewer than k entries): -inf on both sides.
    """
    valid = teacher_ids >= 0
    ids = teacher_ids.clamp(min=0)
    log_z = torch.logsumexp(student_logits, dim=-1, keepdim=True)
    log_q_top = student_logits.gather(-1, ids) - log_z
    marks = torch.zeros(student_logits.shape, dtype=torch.uint8, device=student_logits.device)
    in_top = marks.scatter_add_(-1, ids, valid.to(torch.uint8)) > 0
    log_q_other = torch.logsumexp(student_logits.masked_fill(in_top, float("-inf")), dim=-1, keepdim=True) - log_z
    log_p_top = teacher_logprobs.float().masked_fill(~valid, float("-inf"))
    p_other = (1 - log_p_top.exp().sum(-1, keepdim=True)).clamp(min=TAIL_FLOOR)
    no_tail = in_top.all(-1, keepdim=True)  # the top-k is the whole vocabulary: no "other" on either side
    log_p_other = torch.where(no_tail, float("-inf"), torch.log(p_other))
    log_p = torch.cat([log_p_top, log_p_other], dim=-1)
    log_q = torch.cat([log_q_top.masked_fill(~valid, float("-inf")), log_q_other], dim=-1)
    return log_p, log_q


def sparse_divergence_sum(
    student_logits: torch.Tensor,
    positions: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    kind: str,
    temperature: float = 1.0,
    beta: float = 0.5,
) -> torch.Tensor:
    """Summed divergence against a teacher's top-k log-probs (T = 1), one row of [k] per position.

    Row i of `teacher_ids` / `teacher_logprobs` belongs to `positions[i]`.
    """
    student = student_logits.reshape(-1, student_logits.size(-1))
    total = student.new_zeros((), dtype=torch.float32)
    for part, rows in _chunks(positions):
        student_rows = student.index_select(0, rows).float()
        total = total + sparse_rows_sum(
            student_rows, teacher_ids[part], teacher_logprobs[part], kind, temperature, beta
        )
    return total


def sparse_rows_sum(
    student_logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    kind: str,
    temperature: float = 1.0,
    beta: float = 0.5,
) -> torch.Tensor:
    """`sparse_divergence_sum` of rows that are already the target positions' ([n, V] and [n, k])."""
    log_p, log_q = bucket_log_probs(student_logits, teacher_ids, teacher_logprobs)
    # the log-softmax inside also renormalises rounded float16 rows at T = 1
    return _tempered_divergence_sum(log_p, log_q, kind, temperature, beta) * temperature**2


def dense_rows_sum(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str, temperature: float = 1.0, beta: float = 0.5
) -> torch.Tensor:
    """`dense_divergence_sum` of rows that are already the target positions' ([n, V] each, float32)."""
    return _tempered_divergence_sum(teacher_logits, student_logits, kind, temperature, beta) * temperature**2


def feature_loss_sum(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, kind: str) -> torch.Tensor:
    """Hidden-state matching summed over positions ([N, d] each, same width): `mse` (mean over the
    width) or `cosine` (1 - cosine similarity)."""
    student, teacher = student_hidden.float(), teacher_hidden.float()
    if kind == "mse":
        return ((student - teacher) ** 2).mean(-1).sum()
    if kind == "cosine":
        return (1 - F.cosine_similarity(student, teacher, dim=-1)).sum()
    raise ValueError(f"unknown feature loss {kind!r}; one of mse, cosine")
