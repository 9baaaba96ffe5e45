"""GPU paths (marked `gpu`, skipped without CUDA): torch's varlen flash kernel behind `sdpa_varlen`
keeps packed sequences apart, and the fused loss keeps its value and its memory bound in bf16."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.gpu


def relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.float() - expected.float()).norm() / expected.float().norm())


def test_varlen_kernel_equals_sdpa_per_sequence():
    from sky_distill.train.attention import torch_varlen_attn, varlen_attention_forward, varlen_keys

    if torch_varlen_attn() is None:
        pytest.skip("torch.nn.attention.varlen is not in this torch build")
    torch.manual_seed(0)
    lengths = [700, 1, 300, 1024, 23]
    positions = torch.cat([torch.arange(n) for n in lengths])[None].cuda()
    heads, kv_heads, dim, total = 12, 2, 128, sum(lengths)
    query = torch.randn(1, heads, total, dim, device="cuda", dtype=torch.bfloat16)
    key, value = (torch.randn(1, kv_heads, total, dim, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    keys = varlen_keys(positions)
    out, _ = varlen_attention_forward(torch.nn.Module(), query, key, value, None, scaling=dim**-0.5, **keys)
    start = 0
    for n in lengths:
        q = query[:, :, start : start + n]
        k, v = (t[:, :, start : start + n].repeat_interleave(heads // kv_heads, dim=1) for t in (key, value))
        expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
        assert relative(out[0, start : start + n].transpose(0, 1), expected[0]) < 2e-2, n
        start += n


def test_fused_cross_entropy_in_bf16_matches_and_holds_a_fraction_of_the_memory():
    from sky_distill.train.fused_loss import chunked_head_loss
    from sky_distill.train.losses import cross_entropy_chunks, cross_entropy_sum

    torch.manual_seed(0)
    tokens, width, vocab = 16384, 1536, 151_936
    hidden = (torch.randn(tokens, width, device="cuda") * 0.5).bfloat16().requires_grad_()
    weight = (torch.randn(vocab, width, device="cuda") * 0.02).bfloat16().requires_grad_()
    targets = torch.randint(0, vocab, (tokens,), device="cuda")
    positions = torch.arange(tokens, device="cuda")

    def peak(run) -> tuple[torch.Tensor, float, tuple]:
        hidden.grad = weight.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        value = run()
        value.backward()
        torch.cuda.synchronize()
        return value.detach(), (torch.cuda.max_memory_allocated() - base) / 2**30, (hidden.grad, weight.grad)

    unfused, unfused_gib, unfused_grads = peak(lambda: cross_entropy_sum((hidden @ weight.T)[None], positions, targets))
    fused, fused_gib, fused_grads = peak(
        lambda: chunked_head_loss(hidden, weight, cross_entropy_chunks(targets), {"ce": 1.0})[0]
    )
    assert relative(fused, unfused) < 1e-3
    for mine, theirs in zip(fused_grads, unfused_grads):
        assert relative(mine, theirs) < 2e-2
    assert fused_gib < unfused_gib / 2.5, (fused_gib, unfused_gib)  # H200: 5.5 vs 17.4 GiB (gpu_step.py)


def test_on_policy_loss_in_bf16_matches_unfused_is_zero_at_the_teacher_and_holds_a_fraction_of_the_memory():
    from sky_distill.config import OnPolicyConfig
    from sky_distill.train.fused_loss import chunked_head_loss
    from sky_distill.train.opd_loss import OnPolicyLoss, sampled_logprobs

    torch.manual_seed(0)
    tokens, width, vocab = 16384, 1536, 151_936  # a 16K-token row with Qwen's vocabulary
    hidden = (torch.randn(tokens, width, device="cuda") * 0.5).bfloat16().requires_grad_()
    weight = (torch.randn(vocab, width, device="cuda") * 0.02).bfloat16().requires_grad_()
    targets = torch.randint(0, vocab, (tokens,), device="cuda")
    with torch.no_grad():  # the sampling student's own log-probs, in slices (full float32 logits: 10 GB)
        old = torch.cat([sampled_logprobs(h @ weight.T, t) for h, t in zip(hidden.split(2048), targets.split(2048))])
    loss = OnPolicyLoss(OnPolicyConfig(clip_ratio=None))

    def run(teacher: torch.Tensor, fused: bool) -> tuple[torch.Tensor, float, tuple]:
        batch = {"old_logprobs": old, "teacher_token_logprobs": teacher, "correct": torch.ones_like(old)}
        terms, weights = loss.chunk_terms(batch, targets), loss.weights()
        hidden.grad = weight.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        if fused:
            value = chunked_head_loss(hidden, weight, terms, weights)[0]
        else:
            sums = terms((hidden @ weight.T).float(), slice(0, tokens))
            value = sum(weights[name] * sums[name] for name in weights)
        value.backward()
        torch.cuda.synchronize()
        return value.detach(), (torch.cuda.max_memory_allocated() - base) / 2**30, (hidden.grad, weight.grad)

    teacher = old + 0.3 * torch.randn_like(old)
    unfused, unfused_gib, unfused_grads = run(teacher, fused=False)
    fused, fused_gib, fused_grads = run(teacher, fused=True)
    assert relative(fused, unfused) < 1e-2  # bf16 logits: the ratio exp(new - old) is 1 only to bf16 precision
    for mine, theirs in zip(fused_grads, unfused_grads):
        assert relative(mine, theirs) < 3e-2
    assert fused_gib < unfused_gib / 2.5, (fused_gib, unfused_gib)
    at_teacher, _, grads = run(old.clone(), fused=True)  # a student identical to its teacher: A = 0
    assert at_teacher.item() == 0.0
    assert all(torch.count_nonzero(grad) == 0 for grad in grads)
    print(f"on-policy loss, 16K tokens x 152K vocab, bf16: fused {fused_gib:.2f} GiB, unfused {unfused_gib:.2f} GiB")
