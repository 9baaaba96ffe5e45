"""Fused (chunked, from hidden states) losses equal the unfused ones on logits: values and every
parameter's gradient, to 1e-5 relative, for CE and each KD loss, sparse and dense, in float32."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from sky_distill.config import DistillConfig
from sky_distill.train import fused_loss
from sky_distill.train.data import IGNORE_INDEX, EncodedExample, PackedRow, collate_packed
from sky_distill.train.distill import DistillLoss
from sky_distill.train.fused_loss import chunked_head_loss
from sky_distill.train.losses import CrossEntropyLoss, target_positions

VOCAB, TOP_K = 512, 6


def tiny(seed: int, width: int = 64, tie: bool = False) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=tie,
        attn_implementation="sdpa",
    )
    return Qwen2ForCausalLM(config).float()


def packed_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """One row packing three examples (prompts masked), with stored top-k rows per target position."""
    generator = torch.Generator().manual_seed(seed)
    row = PackedRow(64)
    for prompt, response in ((5, 9), (3, 14), (7, 11)):
        ids = torch.randint(0, VOCAB, (prompt + response,), generator=generator).tolist()
        row.add(EncodedExample(ids, [IGNORE_INDEX] * prompt + ids[prompt:]))
    batch = collate_packed([row], pad_id=0)
    positions, _ = target_positions(batch)
    scores = torch.randn(positions.numel(), VOCAB, generator=generator) * 3
    logprobs, ids = scores.log_softmax(-1).topk(TOP_K, dim=-1)
    ids[0, -2:], logprobs[0, -2:] = -1, float("-inf")  # a position with fewer than k entries
    return batch | {"teacher_ids": ids, "teacher_logprobs": logprobs}


def loss_and_grads(loss, model, batch):
    model.zero_grad()
    sums = loss(model, batch)
    sums.total.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return sums, grads


def assert_same(fused, unfused):
    (fused_sums, fused_grads), (sums, grads) = fused, unfused
    torch.testing.assert_close(fused_sums.total, sums.total, rtol=1e-5, atol=0)
    assert fused_sums.parts.keys() == sums.parts.keys()
    for name, value in sums.parts.items():
        torch.testing.assert_close(fused_sums.parts[name], value, rtol=1e-5, atol=0)
    assert fused_grads.keys() == grads.keys()
    for name, grad in grads.items():
        assert (fused_grads[name] - grad).norm() <= 1e-5 * grad.norm(), name


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(fused_loss, "CHUNK_ELEMENTS", 7 * VOCAB)  # 7 rows a chunk: several chunks, a ragged last


@pytest.mark.parametrize("tie", [False, True])
def test_fused_cross_entropy_equals_unfused(tie):
    model, batch = tiny(0, tie=tie), packed_batch()
    assert_same(
        loss_and_grads(CrossEntropyLoss(fused=True), model, batch),
        loss_and_grads(CrossEntropyLoss(fused=False), model, batch),
    )


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd", "tv"])
def test_fused_sparse_top_k_kd_equals_unfused(kind):
    model, batch = tiny(1), packed_batch(1)
    config = DistillConfig(kind=kind, temperature=2.0, beta=0.3, ce_weight=0.5, kd_weight=1.5)
    assert_same(
        loss_and_grads(DistillLoss(config, fused=True), model, batch),
        loss_and_grads(DistillLoss(config, fused=False), model, batch),
    )


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd", "tv"])
def test_fused_online_dense_kd_equals_unfused(kind):
    model, teacher, batch = tiny(2), tiny(3, width=96).requires_grad_(False), packed_batch(2)
    config = DistillConfig(kind=kind, temperature=1.5, teacher="online", teacher_path="unused")
    assert_same(
        loss_and_grads(DistillLoss(config, teacher, fused=True), model, batch),
        loss_and_grads(DistillLoss(config, teacher, fused=False), model, batch),
    )


def test_chunked_head_loss_in_float64_and_without_grad():
    """The autograd function itself, against plain autograd through the full logits (float64)."""
    generator = torch.Generator().manual_seed(4)
    hidden = torch.randn(23, 16, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(40, 16, dtype=torch.float64, generator=generator, requires_grad=True)
    targets = torch.randint(0, 40, (23,), generator=generator)

    def chunk_loss(logits, part):
        return {"ce": torch.nn.functional.cross_entropy(logits.double(), targets[part], reduction="sum")}

    total, parts = chunked_head_loss(hidden, weight, chunk_loss, {"ce": 2.0}, rows=5)
    reference = 2.0 * torch.nn.functional.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    torch.testing.assert_close(total.double(), reference, rtol=1e-6, atol=0)
    torch.testing.assert_close(parts["ce"].double() * 2, reference, rtol=1e-6, atol=0)
    expected = torch.autograd.grad(reference, (hidden, weight))
    (3 * total).backward()
    torch.testing.assert_close(hidden.grad, 3 * expected[0], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(weight.grad, 3 * expected[1], rtol=1e-6, atol=1e-9)
    with torch.no_grad():
        again, _ = chunked_head_loss(hidden, weight, chunk_loss, {"ce": 2.0}, rows=5)
    assert not again.requires_grad and torch.isclose(again, total.detach())


def test_an_online_teacher_with_another_vocabulary_is_refused():
    from sky_distill.train.distill import TeacherShapeError

    teacher = tiny(5)
    teacher.resize_token_embeddings(VOCAB + 8)
    config = DistillConfig(teacher="online", teacher_path="unused")
    with pytest.raises(TeacherShapeError, match=f"teacher vocabulary {VOCAB + 8} vs student {VOCAB}"):
        DistillLoss(config, teacher, fused=True)(tiny(6), packed_batch())
