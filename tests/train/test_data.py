"""Golden tests of the training data: label masks, EOS and packed boundaries, exactly as expected."""

import pytest
import torch

from sky_distill.train.batching import (
    BatchPlan,
    BatchSchedule,
    fit_micro_batch,
    rank_micro_batches,
    step_rows,
    steps_per_epoch,
)
from sky_distill.train.data import (
    IGNORE_INDEX,
    EncodedExample,
    TemplateError,
    collate_packed,
    collate_padded,
    collate_rows,
    encode_conversation,
    pack_examples,
    padding_fraction,
)
from sky_distill.train.templates import ChatTemplateError, apply_chat_template_choice, end_of_turn_ids
from tests.train.conftest import trace_conversations

SYSTEM_USER_ASSISTANT = [
    {"role": "system", "content": "S"},
    {"role": "user", "content": "Q"},
    {"role": "assistant", "content": "A!"},
]
# The exact token sequence of SYSTEM_USER_ASSISTANT per template (byte-level: Ċ is a newline).
GOLDEN_TOKENS = {
    "chatml": [
        "<|im_start|>",
        "s",
        "y",
        "s",
        "t",
        "e",
        "m",
        "Ċ",
        "S",
        "<|im_end|>",
        "Ċ",
        "<|im_start|>",
        "u",
        "s",
        "e",
        "r",
        "Ċ",
        "Q",
        "<|im_end|>",
        "Ċ",
        "<|im_start|>",
        "a",
        "s",
        "s",
        "i",
        "s",
        "t",
        "a",
        "n",
        "t",
        "Ċ",
        "A",
        "!",
        "<|im_end|>",
    ],  # fmt: skip
    "llama3": [
        "<|begin_of_text|>",
        "<|start_header_id|>",
        "s",
        "y",
        "s",
        "t",
        "e",
        "m",
        "<|end_header_id|>",
        "Ċ",
        "Ċ",
        "S",
        "<|eot_id|>",
        "<|start_header_id|>",
        "u",
        "s",
        "e",
        "r",
        "<|end_header_id|>",
        "Ċ",
        "Ċ",
        "Q",
        "<|eot_id|>",
        "<|start_header_id|>",
        "a",
        "s",
        "s",
        "i",
        "s",
        "t",
        "a",
        "n",
        "t",
        "<|end_header_id|>",
        "Ċ",
        "Ċ",
        "A",
        "!",
        "<|eot_id|>",
    ],  # fmt: skip
}
GOLDEN_EOS = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>"}


def tokens(tokenizer, ids):
    return tokenizer.convert_ids_to_tokens(ids)


def learned(tokenizer, example):
    return tokens(tokenizer, [label for label in example.labels if label != IGNORE_INDEX])


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_golden_label_mask_and_eos(template, tokenizers):
    tokenizer = tokenizers[template]
    example = encode_conversation(tokenizer, SYSTEM_USER_ASSISTANT, end_of_turn=end_of_turn_ids(tokenizer))
    assert tokens(tokenizer, example.input_ids) == GOLDEN_TOKENS[template]
    # loss on the response and its end-of-turn token only; nothing after EOS (ChatML's "\n" is dropped)
    assert learned(tokenizer, example) == ["A", "!", GOLDEN_EOS[template]]
    assert example.labels[:-3] == [IGNORE_INDEX] * (len(example) - 3)
    assert example.labels[-3:] == example.input_ids[-3:]
    assert example.input_ids[-1] == tokenizer.convert_tokens_to_ids(GOLDEN_EOS[template])


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_only_the_final_assistant_turn_is_learned(template, tokenizers):
    tokenizer = tokenizers[template]
    conversation = [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "first"},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "<think>\nx\n</think>\nlast"},
    ]
    example = encode_conversation(tokenizer, conversation, end_of_turn=end_of_turn_ids(tokenizer))
    assert learned(tokenizer, example) == [
        "<think>", "Ċ", "x", "Ċ", "</think>", "Ċ", "l", "a", "s", "t", GOLDEN_EOS[template],
    ]  # fmt: skip


def test_the_template_can_be_chosen_and_is_checked(byte_tokenizer, llama3_tokenizer):
    import copy

    tokenizer = copy.deepcopy(llama3_tokenizer)
    apply_chat_template_choice(tokenizer, "chatml")  # the llama3 tokenizer also has the ChatML tokens
    assert tokens(tokenizer, encode_conversation(tokenizer, SYSTEM_USER_ASSISTANT).input_ids)[0] == "<|im_start|>"
    with pytest.raises(ChatTemplateError, match=r"needs the tokens \['<\|begin_of_text\|>'"):
        apply_chat_template_choice(copy.deepcopy(byte_tokenizer), "llama3")
    bare = copy.deepcopy(byte_tokenizer)
    bare.chat_template = None
    with pytest.raises(ChatTemplateError, match="no chat template; set train.chat_template"):
        apply_chat_template_choice(bare, "auto")


def test_a_template_that_rewrites_the_prompt_is_rejected(byte_tokenizer):
    import copy

    tokenizer = copy.deepcopy(byte_tokenizer)
    # the generation prompt differs from how the full conversation renders the assistant turn
    tokenizer.chat_template = tokenizer.chat_template.replace(
        "{{ '<|im_start|>assistant\\n' }}{%- endif -%}", "{{ '<|im_start|>assistant:' }}{%- endif -%}"
    )
    with pytest.raises(TemplateError, match="prefix"):
        encode_conversation(tokenizer, SYSTEM_USER_ASSISTANT)


def test_eos_is_appended_when_the_template_does_not_close_the_turn(byte_tokenizer):
    import copy

    tokenizer = copy.deepcopy(byte_tokenizer)
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
    tokenizer.chat_template += "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    example = encode_conversation(tokenizer, [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}])
    assert learned(tokenizer, example) == ["A", "Ċ", "<|im_end|>"]


def test_truncation_is_counted_and_never_teaches_a_cut_eos(byte_tokenizer):
    full = encode_conversation(byte_tokenizer, SYSTEM_USER_ASSISTANT)
    cut = encode_conversation(byte_tokenizer, SYSTEM_USER_ASSISTANT, max_seq_len=len(full) - 1)
    assert len(cut) == len(full) - 1 and cut.truncated_tokens == 1
    assert learned(byte_tokenizer, cut) == ["A", "!"]


def golden_pack(tokenizer):
    def encode(answer):
        messages = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": answer}]
        return encode_conversation(tokenizer, messages, end_of_turn=end_of_turn_ids(tokenizer))

    return encode("A!"), encode("Yes."), encode("No")


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_golden_packed_boundaries(template, tokenizers):
    tokenizer = tokenizers[template]
    first, second, third = golden_pack(tokenizer)
    prompt = {"chatml": 20, "llama3": 24}[template]  # tokens before the response
    assert (len(first), len(second), len(third)) == (prompt + 3, prompt + 5, prompt + 3)
    capacity = len(first) + len(second) + 2
    rows = pack_examples([first, second, third], capacity)
    # best-fit decreasing: the longest opens row 0, the next fits beside it, the third opens row 1
    assert [[example is second, example is first] for example in rows[0].examples] == [[True, False], [False, True]]
    assert rows[1].examples == [third]
    batch = collate_packed(rows, pad_id=tokenizer.pad_token_id)
    a, b = len(second), len(first)
    width = a + b
    assert batch["input_ids"].shape == (2, width)
    assert batch["position_ids"][0].tolist() == list(range(a)) + list(range(b))
    assert batch["position_ids"][1].tolist() == list(range(len(third))) + list(range(width - len(third)))
    eos = tokenizer.convert_tokens_to_ids(GOLDEN_EOS[template])
    labels = batch["labels"][0].tolist()
    assert [i for i, label in enumerate(labels) if label != IGNORE_INDEX] == [
        *range(a - 5, a),
        *range(width - 3, width),
    ]
    assert labels[a - 1] == eos and labels[width - 1] == eos  # each packed sequence ends on a learned EOS
    assert labels[0] == IGNORE_INDEX and labels[a] == IGNORE_INDEX  # no target crosses the boundary
    assert batch["labels"][1, len(third) :].eq(IGNORE_INDEX).all()
    assert batch["input_ids"][1, len(third) :].eq(tokenizer.pad_token_id).all()


def test_packing_fits_rows_and_keeps_every_example():
    examples = [EncodedExample(list(range(n)), list(range(n))) for n in (7, 3, 5, 2, 8, 1, 4)]
    rows = pack_examples(examples, capacity=10)
    assert sorted(len(e) for row in rows for e in row.examples) == sorted(len(e) for e in examples)
    assert all(row.length <= 10 for row in rows)
    assert len(rows) == 3  # 30 tokens in rows of 10: best-fit reaches the minimum
    with pytest.raises(ValueError, match="exceeds the row capacity"):
        pack_examples([EncodedExample([0] * 11, [0] * 11)], capacity=10)


def test_collate_padded_masks_padding():
    batch = collate_padded([EncodedExample([5, 6, 7], [IGNORE_INDEX, 6, 7]), EncodedExample([8], [8])], pad_id=0)
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"][1].tolist() == [8, IGNORE_INDEX, IGNORE_INDEX]


def micro_batch_padding(rows, plan, padding_free=False):
    schedule = BatchSchedule([row.length for row in rows], plan, seed=0)
    real, computed = [], []
    for step in range(schedule.steps_per_epoch):
        for rank in range(plan.world_size):
            for micro in schedule.micro_batches(step, rank):
                batch = collate_rows([rows[index] for index in micro], 0, packing=True, padding_free=padding_free)
                real.append(sum(rows[index].length for index in micro))
                computed.append(batch["input_ids"].numel())
    return padding_fraction(real, computed)


def test_packing_the_trace_fixture_wastes_under_two_percent(byte_tokenizer):
    """Real Sky-T1 trace lengths (2K-39K bytes) in 16K rows: padding <= 2% of the computed tokens."""
    conversations = trace_conversations()
    examples = [encode_conversation(byte_tokenizer, c, max_seq_len=16384) for c in conversations]
    rows = pack_examples(examples, 16384)
    assert sum(len(row.examples) for row in rows) == len(examples)
    assert sum(row.length for row in rows) / (len(rows) * 16384) > 0.95  # rows are nearly full
    assert micro_batch_padding(rows, BatchPlan(16, 1, 2)) == 0.0  # one row per micro batch: none at all
    assert micro_batch_padding(rows, BatchPlan(16, 2, 2)) <= 0.02
    assert micro_batch_padding(rows, BatchPlan(16, 4, 2), padding_free=True) == 0.0  # flash attention
    # one example per row, HF-style random batches of 4: much of the compute would be padding
    unpacked = [len(example) for example in examples]
    batches = [unpacked[i : i + 4] for i in range(0, len(unpacked), 4)]
    assert padding_fraction([sum(b) for b in batches], [max(b) * len(b) for b in batches]) > 0.2


def test_batch_schedule_covers_each_row_once_per_epoch_across_ranks():
    plan = BatchPlan(global_batch_size=8, micro_batch_size=2, world_size=2)
    assert plan.gradient_accumulation_steps == 2
    num_rows = 32
    seen = []
    for step in range(steps_per_epoch(num_rows, 8)):
        rows = step_rows(num_rows, plan, seed=3, global_step=step)
        per_rank = [sum(rank_micro_batches(rows, plan, rank), []) for rank in range(2)]
        assert sorted(per_rank[0] + per_rank[1]) == sorted(rows)
        seen += rows
    assert sorted(seen) == list(range(num_rows))
    assert step_rows(num_rows, plan, 3, 4) != step_rows(num_rows, plan, 3, 0)  # a new epoch reshuffles
    assert step_rows(num_rows, plan, 3, 5) == step_rows(num_rows, plan, 3, 5)


def test_length_grouping_puts_similar_lengths_together_and_covers_every_row():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(10, 1000, (256,), generator=generator).tolist()
    plan = BatchPlan(global_batch_size=8, micro_batch_size=2, world_size=2)

    def padded_share(group_by_length):
        schedule = BatchSchedule(lengths, plan, seed=1, group_by_length=group_by_length)
        rows = [schedule.step_rows(step) for step in range(schedule.steps_per_epoch)]
        assert sorted(sum(rows, [])) == list(range(len(lengths)))
        micro = [
            [lengths[i] for i in batch] for s in range(schedule.steps_per_epoch) for r in range(2)
            for batch in schedule.micro_batches(s, r)
        ]  # fmt: skip
        return padding_fraction([sum(b) for b in micro], [max(b) * len(b) for b in micro])

    assert padded_share(True) < 0.05 < padded_share(False)


def test_batch_plan_rejects_indivisible_sizes():
    with pytest.raises(ValueError, match="global_batch_size 10"):
        BatchPlan(10, 4, 2)
    assert fit_micro_batch(16, 8, 2) == 8
    assert fit_micro_batch(12, 8, 2) == 6
