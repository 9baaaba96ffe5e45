"""Distillation losses against direct computations on small tensors: each divergence, T^2 scaling,
response-only masking in a packed row, sparse top-k == dense when k covers the vocabulary."""

from __future__ import annotations

import math

import pytest
import torch

from sky_distill.train import distill_losses
from sky_distill.train.data import IGNORE_INDEX, EncodedExample, PackedRow, collate_packed
from sky_distill.train.distill_losses import (
    dense_divergence_sum,
    divergence,
    feature_loss_sum,
    sparse_divergence_sum,
)
from sky_distill.train.losses import target_positions

V = 7


def direct(p: torch.Tensor, q: torch.Tensor, kind: str, beta: float = 0.5) -> float:
    """The textbook formula on probability rows, summed over rows, in float64."""
    p, q = p.double(), q.double()
    kl = lambda a, b: (a * (a / b).log()).sum(-1)  # noqa: E731
    if kind == "forward_kl":
        value = kl(p, q)
    elif kind == "reverse_kl":
        value = kl(q, p)
    elif kind == "tv":
        value = 0.5 * (p - q).abs().sum(-1)
    else:
        m = beta * p + (1 - beta) * q
        value = (beta * kl(p, m) + (1 - beta) * kl(q, m)) / (beta * (1 - beta))
    return float(value.sum())


@pytest.fixture
def packed_batch():
    """One packed row of two examples (prompt 3 + response 2, prompt 2 + response 3) and random logits."""
    first = EncodedExample([1, 2, 3, 4, 5], [IGNORE_INDEX] * 3 + [4, 5])
    second = EncodedExample([1, 2, 6, 0, 3], [IGNORE_INDEX] * 2 + [6, 0, 3])
    row = PackedRow(16)
    row.add(first)
    row.add(second)
    batch = collate_packed([row], pad_id=0)
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(1, 10, V, generator=generator)
    teacher = torch.randn(1, 10, V, generator=generator) * 2
    return batch, student, teacher


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd", "tv"])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_dense_losses_match_the_formula_with_t_squared_on_response_positions(packed_batch, kind, temperature):
    batch, student, teacher = packed_batch
    positions, _ = target_positions(batch)
    # positions predicting a response token: 2, 3 (first example) and 6, 7, 8 (second); none across the boundary
    assert positions.tolist() == [2, 3, 6, 7, 8]
    p = torch.softmax(teacher[0, positions] / temperature, -1)
    q = torch.softmax(student[0, positions] / temperature, -1)
    expected = temperature**2 * direct(p, q, kind, beta=0.3)
    actual = dense_divergence_sum(student, teacher, positions, kind, temperature, beta=0.3)
    assert float(actual) == pytest.approx(expected, rel=1e-5)


def test_prompt_padding_and_neighbour_positions_do_not_count(packed_batch):
    batch, student, teacher = packed_batch
    positions, _ = target_positions(batch)
    before = dense_divergence_sum(student, teacher, positions, "forward_kl")
    changed = student.clone()
    others = [index for index in range(10) if index not in positions.tolist()]
    changed[0, others] = torch.randn(len(others), V) * 10
    assert float(dense_divergence_sum(changed, teacher, positions, "forward_kl")) == pytest.approx(float(before))
    changed[0, 7] += torch.arange(V).float()  # a response position does count
    assert float(dense_divergence_sum(changed, teacher, positions, "forward_kl")) != pytest.approx(float(before))


def test_temperature_scaling_is_t_squared_and_the_kl_is_zero_for_equal_distributions():
    logits = torch.randn(4, V)
    positions = torch.arange(4)
    assert float(dense_divergence_sum(logits, logits, positions, "forward_kl", 3.0)) == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(4, V)
    unscaled = direct(torch.softmax(other / 4, -1), torch.softmax(logits / 4, -1), "forward_kl")
    assert float(dense_divergence_sum(logits, other, positions, "forward_kl", 4.0)) == pytest.approx(
        16 * unscaled, rel=1e-5
    )


def test_jsd_runs_from_forward_kl_at_beta_0_to_reverse_kl_at_beta_1():
    log_p = torch.log_softmax(torch.randn(3, V, dtype=torch.float64), -1)
    log_q = torch.log_softmax(torch.randn(3, V, dtype=torch.float64), -1)
    forward, reverse = divergence(log_p, log_q, "forward_kl"), divergence(log_p, log_q, "reverse_kl")
    torch.testing.assert_close(divergence(log_p, log_q, "jsd", 0.0), forward)
    torch.testing.assert_close(divergence(log_p, log_q, "jsd", 1.0), reverse)
    torch.testing.assert_close(divergence(log_p, log_q, "jsd", 1e-4), forward, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(divergence(log_p, log_q, "jsd", 1 - 1e-4), reverse, rtol=1e-3, atol=1e-4)


def top_k(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    values, ids = torch.log_softmax(logits, -1).topk(k, dim=-1)
    return ids, values


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd", "tv"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_sparse_equals_dense_when_k_covers_the_vocabulary(packed_batch, kind, temperature):
    batch, student, teacher = packed_batch
    positions, _ = target_positions(batch)
    ids, logprobs = top_k(teacher[0, positions], V)
    dense = dense_divergence_sum(student, teacher, positions, kind, temperature)
    sparse = sparse_divergence_sum(student, positions, ids, logprobs, kind, temperature)
    assert float(sparse) == pytest.approx(float(dense), rel=1e-4, abs=1e-5)


def test_sparse_top_k_puts_the_missing_mass_in_an_other_bucket_for_both_sides(packed_batch):
    batch, student, teacher = packed_batch
    positions, _ = target_positions(batch)
    ids, logprobs = top_k(teacher[0, positions], 3)
    p_full = torch.softmax(teacher[0, positions], -1)
    q_full = torch.softmax(student[0, positions], -1)
    p_top, q_top = p_full.gather(-1, ids), q_full.gather(-1, ids)
    p = torch.cat([p_top, 1 - p_top.sum(-1, keepdim=True)], -1)
    q = torch.cat([q_top, 1 - q_top.sum(-1, keepdim=True)], -1)
    sparse = sparse_divergence_sum(student, positions, ids, logprobs, "forward_kl")
    assert float(sparse) == pytest.approx(direct(p, q, "forward_kl"), rel=1e-5)
    assert float(sparse) < float(dense_divergence_sum(student, teacher, positions, "forward_kl"))  # coarsened


def test_sparse_padding_rows_carry_no_signal_and_a_full_top_k_stays_finite():
    student = torch.randn(2, V)
    ids = torch.tensor([[-1, -1], [0, 1]])
    logprobs = torch.tensor([[-math.inf, -math.inf], [0.0, -30.0]])  # row 2: the teacher is sure of id 0
    for kind in ("forward_kl", "reverse_kl", "jsd", "tv"):
        per_row = [
            float(sparse_divergence_sum(student, torch.tensor([i]), ids[i : i + 1], logprobs[i : i + 1], kind))
            for i in range(2)
        ]
        assert per_row[0] == pytest.approx(0.0, abs=1e-6), kind  # a padding row: nothing to match
        assert math.isfinite(per_row[1]) and per_row[1] > 0, kind


def test_losses_are_chunked_and_differentiable(monkeypatch, packed_batch):
    batch, student, teacher = packed_batch
    positions, _ = target_positions(batch)
    ids, logprobs = top_k(teacher[0, positions], 4)
    whole = sparse_divergence_sum(student, positions, ids, logprobs, "jsd", 2.0)
    monkeypatch.setattr(distill_losses, "CHUNK_TOKENS", 2)
    student = student.clone().requires_grad_(True)
    chunked = sparse_divergence_sum(student, positions, ids, logprobs, "jsd", 2.0)
    assert float(chunked.detach()) == pytest.approx(float(whole), rel=1e-6)
    chunked.backward()
    assert student.grad[0, positions].abs().sum() > 0 and student.grad[0, 0].abs().sum() == 0


def test_feature_losses():
    student, teacher = torch.randn(5, 8), torch.randn(5, 8)
    assert float(feature_loss_sum(student, teacher, "mse")) == pytest.approx(
        float(((student - teacher) ** 2).mean(-1).sum())
    )
    cosine = (student * teacher).sum(-1) / (student.norm(dim=-1) * teacher.norm(dim=-1))
    assert float(feature_loss_sum(student, teacher, "cosine")) == pytest.approx(float((1 - cosine).sum()), rel=1e-5)
    assert float(feature_loss_sum(teacher * 3, teacher, "cosine")) == pytest.approx(0.0, abs=1e-5)
