"""Packed and unpacked batches give the same loss and gradients: packed neighbours are isolated."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from sky_distill.train.attention import register as register_varlen_attention
from sky_distill.train.data import (
    IGNORE_INDEX,
    collate_packed,
    collate_padded,
    encode_conversation,
    pack_examples,
    single_rows,
)
from sky_distill.train.losses import CrossEntropyLoss, build_loss, next_token_targets, target_positions
from sky_distill.train.templates import end_of_turn_ids
from tests.train.conftest import trace_conversations

register_varlen_attention()
MAX_LEN = 512  # rows; real traces are cut to 150..350 tokens so a CPU forward stays fast


def fixture_examples(tokenizer, count=6):
    """Sky-T1 traces answering the start of their problem, cut to different lengths (pairs fill a row)."""
    examples = []
    for index, (user, assistant) in enumerate(trace_conversations(count)):
        conversation = [{"role": "user", "content": user["content"][:60]}, assistant]
        examples.append(encode_conversation(tokenizer, conversation, 150 + 40 * index, end_of_turn_ids(tokenizer)))
    return examples


def load(directory, attention):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(directory, attn_implementation=attention, dtype=torch.float32)


def per_example_loss(model, examples, pad_id):
    loss = CrossEntropyLoss()
    return sum(loss(model, collate_padded([example], pad_id)).total for example in examples)


def grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_targets_shift_within_sequences():
    labels = torch.tensor([[IGNORE_INDEX, 5, 6, IGNORE_INDEX, IGNORE_INDEX, 9]])
    assert next_token_targets(labels).tolist() == [[5, 6, IGNORE_INDEX, IGNORE_INDEX, 9, IGNORE_INDEX]]
    positions, targets = target_positions({"labels": labels})
    assert positions.tolist() == [0, 1, 4] and targets.tolist() == [5, 6, 9]
    with pytest.raises(ValueError, match="train.loss 'kl' is not one of ce"):
        build_loss("kl")


@pytest.mark.parametrize(
    ("family", "attention"),
    [("qwen2", "sdpa"), ("qwen2", "eager"), ("llama", "sdpa"), ("qwen2", "sdpa_varlen"), ("llama", "sdpa_varlen")],
)
def test_packed_loss_and_gradients_equal_unpacked(family, attention, tiny_model_dir, tiny_llama_dir, tokenizers):
    directory, tokenizer = {
        "qwen2": (tiny_model_dir, tokenizers["chatml"]),
        "llama": (tiny_llama_dir, tokenizers["llama3"]),
    }[family]
    examples = fixture_examples(tokenizer)
    rows = pack_examples(examples, MAX_LEN)
    assert len(rows) < len(examples)  # several sequences do share a row
    packed_model, single_model = load(directory, attention), load(directory, attention)

    packed = CrossEntropyLoss()(packed_model, collate_packed(rows, tokenizer.pad_token_id)).total
    single = per_example_loss(single_model, examples, tokenizer.pad_token_id)
    torch.testing.assert_close(packed, single, rtol=1e-5, atol=1e-4)
    packed.backward()
    single.backward()
    packed_grads = grads(packed_model)
    for name, grad in grads(single_model).items():  # float32 summation order differs: compare norms
        assert (packed_grads[name] - grad).norm() <= 1e-4 * grad.norm(), name

    # Per position, too: each packed sequence's logits are its logits alone. And the check can
    # fail: positions that run on across the row let neighbours attend to each other, and so
    # does a KV cache (transformers then drops the packed-sequence mask; not sdpa_varlen).
    batch = collate_packed(rows, tokenizer.pad_token_id)
    leaky = dict(batch, position_ids=torch.arange(batch["input_ids"].shape[1]).expand_as(batch["input_ids"]))
    with torch.no_grad():
        alone = [single_model(input_ids=torch.tensor([e.input_ids]), use_cache=False).logits[0] for e in examples]
        isolated = packed_model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
        leaked = packed_model(input_ids=leaky["input_ids"], position_ids=leaky["position_ids"], use_cache=False)
        cached = packed_model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=True)
    assert max_second_sequence_error(rows, examples, isolated.logits, alone) < 1e-4
    assert max_second_sequence_error(rows, examples, leaked.logits, alone) > 1e-2
    if attention != "sdpa_varlen":  # ours keeps sequences apart with a cache too
        assert max_second_sequence_error(rows, examples, cached.logits, alone) > 1e-2


def max_second_sequence_error(rows, examples, packed_logits, alone):
    """Largest logit difference, over rows holding two sequences, on the second one."""
    errors = []
    for row_index, row in enumerate(rows):
        if len(row.examples) > 1:
            first, second = row.examples[:2]
            own = alone[next(i for i, e in enumerate(examples) if e is second)]
            errors.append((packed_logits[row_index, len(first) : len(first) + len(second)] - own).abs().max())
    assert errors
    return max(errors)


def test_packed_and_padded_training_follow_the_same_loss_curve(tiny_model_dir, byte_tokenizer):
    """A few AdamW steps on the same data: packed rows vs one padded example per row."""
    examples = fixture_examples(byte_tokenizer)
    targets = sum(example.num_target_tokens for example in examples)
    pad = byte_tokenizer.pad_token_id
    batches = {
        "packed": collate_packed(pack_examples(examples, MAX_LEN), pad),
        "padded": collate_padded([row.examples[0] for row in single_rows(examples, MAX_LEN)], pad),
    }
    curves = {}
    for name, batch in batches.items():
        model = load(tiny_model_dir, "sdpa")
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        curve = []
        for _ in range(4):
            loss = CrossEntropyLoss()(model, batch).total / targets
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            curve.append(loss.item())
        curves[name] = curve
    assert curves["packed"][-1] < curves["packed"][0]
    torch.testing.assert_close(torch.tensor(curves["packed"]), torch.tensor(curves["padded"]), rtol=1e-4, atol=0)


@pytest.mark.gpu
def test_flash_attention_packing_is_isolated(tiny_model_dir, byte_tokenizer):
    pytest.importorskip("flash_attn")
    from sky_distill.train.data import collate_rows

    examples = fixture_examples(byte_tokenizer)
    rows = pack_examples(examples, MAX_LEN)
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, attn_implementation="flash_attention_2", dtype=torch.bfloat16
    ).cuda()
    batch = {k: v.cuda() for k, v in collate_rows(rows, byte_tokenizer.pad_token_id, True, padding_free=True).items()}
    assert batch["input_ids"].shape[0] == 1  # the padding-free micro batch is one row
    packed = CrossEntropyLoss()(model, batch).total
    reference = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, attn_implementation="sdpa", dtype=torch.bfloat16
    ).cuda()
    single = sum(
        CrossEntropyLoss()(reference, {k: v.cuda() for k, v in collate_padded([e], 0).items()}).total for e in examples
    )
    torch.testing.assert_close(packed, single, rtol=2e-2, atol=0)


@pytest.mark.gpu
def test_liger_kernels_keep_the_loss(tiny_model_dir, byte_tokenizer):
    pytest.importorskip("liger_kernel")
    from sky_distill.train.model import apply_liger_kernels

    examples = fixture_examples(byte_tokenizer)
    batch = {k: v.cuda() for k, v in collate_packed(pack_examples(examples, MAX_LEN), 0).items()}
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).cuda()
    patched = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).cuda()
    assert apply_liger_kernels(patched)
    torch.testing.assert_close(
        CrossEntropyLoss()(patched, batch).total, CrossEntropyLoss()(plain, batch).total, rtol=1e-3, atol=0
    )


def test_the_fused_loss_is_automatic_only_for_large_vocabularies():
    from sky_distill.train.losses import FUSED_LOSS_MIN_VOCAB, use_fused_loss

    assert use_fused_loss("auto", 152_064) and use_fused_loss("auto", FUSED_LOSS_MIN_VOCAB)
    assert not use_fused_loss("auto", 261)
    assert use_fused_loss(True, 261) and not use_fused_loss(False, 152_064)


def test_varlen_attention_on_unpadded_unpacked_rows_equals_sdpa(tiny_model_dir, tokenizers):
    """Rows of one length and no padding: transformers drops the mask and passes a broadcast
    [1, L] position arange. sdpa_varlen once read that as one sequence, attended the first row
    only and left the others' outputs uninitialised (losses changed from run to run)."""
    example = fixture_examples(tokenizers["chatml"])[0]
    batch = collate_padded([example] * 4, tokenizers["chatml"].pad_token_id)
    losses = {}
    for attention in ("sdpa", "sdpa_varlen"):
        with torch.no_grad():
            losses[attention] = CrossEntropyLoss()(load(tiny_model_dir, attention), batch).total
    torch.testing.assert_close(losses["sdpa_varlen"], losses["sdpa"], rtol=1e-5, atol=1e-5)
