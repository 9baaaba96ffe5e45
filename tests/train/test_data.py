import pytest

from sky_distill.train.batching import BatchPlan, fit_micro_batch, rank_micro_batches, step_rows, steps_per_epoch
from sky_distill.train.data import IGNORE_INDEX, EncodedExample, collate_packed, encode_conversation, pack_examples


def conversation(answer: str = "<think>\n1+2+0=3\n</think>\n\\boxed{3}"):
    return [{"role": "user", "content": "Compute 1 + 2."}, {"role": "assistant", "content": answer}]


def test_labels_cover_the_response_and_eos_only(byte_tokenizer):
    example = encode_conversation(byte_tokenizer, conversation())
    prompt = byte_tokenizer.apply_chat_template(conversation()[:1], tokenize=False, add_generation_prompt=True)
    prompt_len = len(byte_tokenizer.encode(prompt))
    assert example.labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
    learned = [label for label in example.labels if label != IGNORE_INDEX]
    assert byte_tokenizer.decode(learned) == conversation()[1]["content"] + "<|im_end|>"
    assert example.input_ids[-1] == byte_tokenizer.eos_token_id  # nothing after EOS (no trailing newline)
    assert example.labels[-1] == byte_tokenizer.eos_token_id


def test_truncation_is_counted(byte_tokenizer):
    full = encode_conversation(byte_tokenizer, conversation())
    cut = encode_conversation(byte_tokenizer, conversation(), max_seq_len=len(full) - 5)
    assert len(cut) == len(full) - 5 and cut.truncated_tokens == 5


def test_packing_fits_rows_and_keeps_every_example():
    examples = [EncodedExample(list(range(n)), list(range(n))) for n in (7, 3, 5, 2, 8, 1, 4)]
    rows = pack_examples(examples, capacity=10)
    assert sorted(len(e) for row in rows for e in row.examples) == sorted(len(e) for e in examples)
    assert all(row.length <= 10 for row in rows)
    assert len(rows) == 3  # 30 tokens in rows of 10: best-fit reaches the minimum
    with pytest.raises(ValueError, match="exceeds the row capacity"):
        pack_examples([EncodedExample([0] * 11, [0] * 11)], capacity=10)


def test_collate_packed_restarts_positions_and_isolates_padding():
    examples = [
        EncodedExample([5, 6, 7], [IGNORE_INDEX, 6, 7]),
        EncodedExample([8, 9], [8, 9]),
        EncodedExample([4], [4]),
    ]
    rows = pack_examples(examples, capacity=5)
    batch = collate_packed(rows, pad_id=0)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 0, 1, 2, 3]]
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [4, 0, 0, 0, 0]]
    assert batch["labels"][1, 1:].tolist() == [IGNORE_INDEX] * 4


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


def test_batch_plan_rejects_indivisible_sizes():
    with pytest.raises(ValueError, match="global_batch_size 10"):
        BatchPlan(10, 4, 2)
    assert fit_micro_batch(16, 8, 2) == 8
    assert fit_micro_batch(12, 8, 2) == 6
