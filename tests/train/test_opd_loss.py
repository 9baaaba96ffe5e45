"""The on-policy loss: value and gradient against a direct computation, zero for a student that
is its teacher, the importance ratio, the verifier terms, and the scored-sample store."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sky_distill.config import OnPolicyConfig
from sky_distill.train.data import pack_examples
from sky_distill.train.on_policy_data import (
    ScoredSample,
    load_scored_examples,
    read_scores,
    scored_example,
    write_scores,
)
from sky_distill.train.opd_loss import OnPolicyLoss, policy_gradient_sum, sampled_logprobs
from sky_distill.train.step import micro_batches
from sky_distill.train.teacher_scoring import score_tokens


def test_per_token_loss_and_gradient_match_a_direct_computation():
    torch.manual_seed(0)
    n, vocab = 7, 11
    logits = torch.randn(n, vocab, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, vocab, (n,))
    old = torch.log_softmax(torch.randn(n, vocab, dtype=torch.float64), -1).gather(-1, targets[:, None])[:, 0]
    teacher = torch.log_softmax(torch.randn(n, vocab, dtype=torch.float64), -1).gather(-1, targets[:, None])[:, 0]

    loss = policy_gradient_sum(sampled_logprobs(logits, targets).double(), old, teacher)
    loss.backward()

    expected_loss, expected_grad = 0.0, torch.zeros(n, vocab, dtype=torch.float64)
    for t in range(n):
        probs = [math.exp(x) for x in logits[t].tolist()]
        total = sum(probs)
        new = math.log(probs[targets[t]] / total)
        advantage = float(teacher[t] - old[t])
        ratio = math.exp(new - float(old[t]))
        expected_loss += -ratio * advantage
        for v in range(vocab):  # d/dlogit_v of -ratio * A = -A * ratio * (1[v = y] - p_v)
            expected_grad[t, v] = -advantage * ratio * (float(v == int(targets[t])) - probs[v] / total)
    assert loss.item() == pytest.approx(expected_loss, rel=1e-5)
    assert torch.allclose(logits.grad, expected_grad, rtol=1e-4, atol=1e-7)


def test_the_clipped_ratio_stops_the_gradient_only_past_the_bound():
    new = torch.tensor([0.5, -0.5, 0.5, -0.5], dtype=torch.float64, requires_grad=True)
    old, teacher = torch.zeros(4, dtype=torch.float64), torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    policy_gradient_sum(new, old, teacher, clip=0.2).backward()
    ratio = new.detach().exp()
    # A > 0 and ratio above 1.2: clipped (no gradient); A > 0 and below: -A ratio; A < 0 above 1.2: kept
    expected = torch.tensor([0.0, -ratio[1], ratio[2], 0.0], dtype=torch.float64)
    assert torch.allclose(new.grad, expected)


def test_at_the_sampling_weights_the_gradient_is_the_reverse_kl_policy_gradient():
    """ratio = 1: grad = sum_t (log p(y_t) - log p_teacher(y_t)) grad log p(y_t)."""
    torch.manual_seed(1)
    logits = torch.randn(5, 9, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 9, (5,))
    teacher = -torch.rand(5, dtype=torch.float64) * 3
    new = sampled_logprobs(logits, targets).double()
    policy_gradient_sum(new, new.detach(), teacher).backward()
    expected = torch.autograd.grad(((new.detach() - teacher) * sampled_logprobs(logits, targets)).sum(), logits)[0]
    assert torch.allclose(logits.grad, expected, rtol=1e-6, atol=1e-9)


def samples_of(model, tokenizer, teacher, top_k=0):
    """Two real samples (prompt ids, response ids) scored by `model` (the sampler) and `teacher`."""
    pairs = []
    for problem, answer in (("Compute 12 + 34.", "<think>2+4=6</think> 46"), ("5 + 5?", "10")):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": problem}], add_generation_prompt=True)
        prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
        pairs.append((prompt, tokenizer.encode(answer) + [tokenizer.eos_token_id]))
    old, scored = score_tokens(model, pairs, 0), score_tokens(teacher, pairs, top_k)
    return [
        ScoredSample(f"p{i}", 0, prompt, response, o, t, float(i % 2))
        for i, ((prompt, response), o, t) in enumerate(zip(pairs, old, scored))
    ]


def batch_of(samples, loss, pad_id):
    rows = pack_examples([scored_example(sample) for sample in samples], 256)
    return next(micro_batches(rows, [list(range(len(rows)))], pad_id, True, False, torch.device("cpu"), loss)).batch


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, byte_tokenizer):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32), byte_tokenizer


@pytest.mark.parametrize("fused", [True, False])
def test_a_student_identical_to_the_teacher_gets_zero_loss_and_zero_gradient(tiny, fused):
    model, tokenizer = tiny
    loss = OnPolicyLoss(OnPolicyConfig(), fused=fused)
    batch = batch_of(samples_of(model, tokenizer, model), loss, tokenizer.pad_token_id or 0)
    model.zero_grad()
    sums = loss(model, batch)
    sums.total.backward()
    assert sums.total.item() == 0.0
    assert sums.parts["reverse_kl"].item() == 0.0
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in model.parameters())


def test_the_model_loss_matches_the_direct_formula_and_fused_equals_unfused(tiny):
    model, tokenizer = tiny
    torch.manual_seed(2)
    teacher = type(model)(model.config)
    teacher.load_state_dict({k: v + 0.05 * torch.randn_like(v) for k, v in model.state_dict().items()})
    samples = samples_of(model, tokenizer, teacher.eval())
    config = OnPolicyConfig(clip_ratio=None)  # at the sampling weights the clip changes nothing anyway
    grads, totals = [], []
    for fused in (True, False):
        loss = OnPolicyLoss(config, fused=fused)
        batch = batch_of(samples, loss, tokenizer.pad_token_id or 0)
        model.zero_grad()
        sums = loss(model, batch)
        sums.total.backward()
        totals.append(sums.total.item())
        grads.append([p.grad.clone() for p in model.parameters()])
    # direct: sample by sample, -exp(new - old) * (teacher - old) at every response token
    model.zero_grad()
    direct = 0.0
    for sample in samples:
        ids = torch.tensor([[*sample.prompt_ids, *sample.response_ids]])
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        start = len(sample.prompt_ids) - 1
        targets = torch.tensor(sample.response_ids)[:, None]
        new = logprobs[start : start + len(sample.response_ids)].gather(-1, targets)[:, 0]
        old, scored = torch.from_numpy(sample.old.sampled), torch.from_numpy(sample.teacher.sampled)
        term = -(torch.exp(new - old) * (scored - old)).sum()
        term.backward()
        direct += term.item()
    assert totals[0] == pytest.approx(direct, rel=1e-4)
    assert totals[1] == pytest.approx(direct, rel=1e-4)
    for fused, unfused, reference in zip(grads[0], grads[1], [p.grad for p in model.parameters()]):
        assert torch.allclose(fused, reference, rtol=1e-3, atol=1e-6)
        assert torch.allclose(unfused, reference, rtol=1e-3, atol=1e-6)
    assert abs(totals[0]) > 1e-3  # a different teacher gives a real signal


def test_verifier_terms_reward_and_ce_touch_only_accepted_samples(tiny):
    model, tokenizer = tiny
    samples = samples_of(model, tokenizer, model, top_k=4)  # sample p1 correct, p0 not
    pad = tokenizer.pad_token_id or 0
    reward = OnPolicyLoss(OnPolicyConfig(verifier="reward", reward_weight=2.0), fused=False)
    sums = reward(model, batch_of(samples, reward, pad))
    accepted = len(samples[1].response_ids)
    assert sums.parts["pg"].item() == pytest.approx(-2.0 * accepted, rel=1e-5)  # ratio 1, A = reward
    ce = OnPolicyLoss(OnPolicyConfig(reverse_kl_weight=0, ce_weight=1.0, verifier="filter"), fused=False)
    ce_sum = ce(model, batch_of(samples, ce, pad)).parts["ce"].item()
    assert ce_sum == pytest.approx(-float(samples[1].old.sampled.sum()), rel=1e-4)
    kd = OnPolicyLoss(OnPolicyConfig(kd_weight=1.0, top_k=4), fused=False)
    assert kd(model, batch_of(samples, kd, pad)).parts["kd"].item() == pytest.approx(0.0, abs=1e-2)


def test_scores_round_trip_and_the_verifier_filter_counts_what_it_drops(tiny, tmp_path):
    model, tokenizer = tiny
    samples = samples_of(model, tokenizer, model, top_k=3)
    path = tmp_path / "scores.npz"
    write_scores(path, samples, 3)
    back = read_scores(path)
    assert [(s.problem_id, s.prompt_ids, s.response_ids, s.correct) for s in back] == [
        (s.problem_id, s.prompt_ids, s.response_ids, s.correct) for s in samples
    ]
    assert np.array_equal(back[0].teacher.ids, samples[0].teacher.ids)
    assert np.array_equal(back[1].old.sampled, samples[1].old.sampled)
    examples, report, learned = load_scored_examples([path], tokenizer, 512, "filter")
    assert len(examples) == 1 and report.rejected_by_reason == {"verifier_rejected": 1}
    assert f"{path}:1: correct:" in report.errors[0]
    assert learned == {tokenizer.eos_token_id}
    _, report = load_scored_examples([path], tokenizer, 20)[:2]
    assert report.rejected_by_reason == {"overlong": 2}


def test_config_refuses_what_cannot_learn():
    with pytest.raises(ValueError, match="top_k"):
        OnPolicyConfig(kd_weight=1.0)
    with pytest.raises(ValueError, match="verifier"):
        OnPolicyConfig(ce_weight=1.0)
    with pytest.raises(ValueError, match="nothing to learn"):
        OnPolicyConfig(reverse_kl_weight=0)
