"""The distillation loss on tiny models: offline rows collated in target order, online teacher,
feature matching with a trained projection; tokenizer and alignment checks; config; the top-k store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sky_distill.config import ConfigError, DistillConfig, validate_groups
from sky_distill.generate.topk_store import TopK, TopKWriter, chunk_dir, pack_topk, read_chunks, store_bytes_per_token
from sky_distill.records import Message, SFTExample, write_jsonl
from sky_distill.train.data import collate_rows, encode_conversation, pack_examples
from sky_distill.train.dataset import load_sft_examples
from sky_distill.train.distill import PROJECTIONS, DistillLoss, attach_projections, exported_state_dict
from sky_distill.train.distill_losses import dense_divergence_sum
from sky_distill.train.losses import model_inputs, target_positions
from sky_distill.train.teacher_signal import (
    TeacherAlignmentError,
    TokenizerMismatchError,
    align_rows,
    check_tokenizers,
    vocabulary_differences,
)


def conversation(problem: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": problem}, {"role": "assistant", "content": answer}]


@pytest.fixture(scope="module")
def models(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    student = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        for parameter in teacher.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return student, teacher


def batch_of(tokenizer, examples):
    rows = pack_examples(examples, 256)
    return collate_rows(rows, tokenizer.pad_token_id or 0, packing=True)


def encoded_examples(tokenizer):
    return [
        encode_conversation(tokenizer, conversation("Compute 12 + 34.", "<think>2+4=6</think> \\boxed{46}")),
        encode_conversation(tokenizer, conversation("Compute 5 + 5.", "\\boxed{10}")),
    ]


def test_offline_rows_line_up_with_target_positions_in_a_packed_batch(byte_tokenizer, models):
    """Rows made from the teacher's own logits at each response token give exactly the dense loss."""
    student, teacher = models
    examples = encoded_examples(byte_tokenizer)
    vocab = teacher.config.vocab_size
    with_rows = []
    for example in examples:  # each example alone: the teacher's full distribution at its targets
        single = batch_of(byte_tokenizer, [example])
        positions, _ = target_positions(single)
        with torch.no_grad():
            logits = teacher(**model_inputs(single)).logits.reshape(-1, vocab)[positions]
        rows = TopK(*[a.numpy() for a in torch.log_softmax(logits, -1).topk(vocab, -1)[::-1]], np.zeros(len(positions)))
        with_rows.append(_with(example, rows))
    batch = batch_of(byte_tokenizer, with_rows)
    positions, _ = target_positions(batch)
    assert batch["teacher_ids"].shape == (positions.numel(), vocab)
    with torch.no_grad():
        teacher_logits = teacher(**model_inputs(batch)).logits
    offline = DistillLoss(DistillConfig(ce_weight=0, kd_weight=1, temperature=2.0))(student, batch)
    half = dict(batch, teacher_logprobs=batch["teacher_logprobs"].half())  # as stored
    stored_half = DistillLoss(DistillConfig(ce_weight=0, kd_weight=1, temperature=2.0))(student, half)
    online = DistillLoss(DistillConfig(ce_weight=0, teacher="online", teacher_path="t", temperature=2.0), teacher)
    with torch.no_grad():
        expected = dense_divergence_sum(
            student(**model_inputs(batch)).logits, teacher_logits, positions, "forward_kl", 2.0
        )
    assert float(offline.parts["kd"]) == pytest.approx(float(expected), rel=1e-4)
    # float16 log-probs: ~0.4% resolution in probability below e^-4; this teacher is near-uniform
    assert float(stored_half.parts["kd"]) == pytest.approx(float(expected), rel=2e-2)
    assert float(online(student, batch).parts["kd"]) == pytest.approx(float(expected), rel=1e-5)


def _with(example, rows: TopK):
    from dataclasses import replace

    from sky_distill.train.teacher_signal import TeacherRows

    return replace(example, teacher=TeacherRows(rows.ids, rows.logprobs))


def test_ce_and_kd_weights_combine(byte_tokenizer, models):
    student, teacher = models
    batch = batch_of(byte_tokenizer, encoded_examples(byte_tokenizer))
    config = DistillConfig(ce_weight=0.3, kd_weight=2.0, kind="reverse_kl", teacher="online", teacher_path="t")
    sums = DistillLoss(config, teacher)(student, batch)
    assert float(sums.total) == pytest.approx(0.3 * float(sums.parts["ce"]) + 2.0 * float(sums.parts["kd"]), rel=1e-6)
    assert float(sums.parts["kd"]) > 0


def test_feature_matching_trains_a_projection_when_widths_differ(byte_tokenizer, tmp_path):
    from sky_distill.models.tiny import TinyModelSpec, build_tiny_model

    student = build_tiny_model(TinyModelSpec(num_layers=2), byte_tokenizer, seed=0)
    teacher = build_tiny_model(
        TinyModelSpec(num_layers=2, hidden_size=256, num_heads=4, num_kv_heads=4), byte_tokenizer, seed=1
    ).eval()
    config = DistillConfig(
        kd_weight=0,
        teacher="online",
        teacher_path="t",
        features={"weight": 1.0, "kind": "mse", "layers": [[1, 2], [-1, -1]]},
    )
    projections = attach_projections(student, teacher.config.hidden_size, config.features.layers)
    assert projections[0].weight.shape == (256, 128)
    batch = batch_of(byte_tokenizer, encoded_examples(byte_tokenizer))
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-2)  # the projection is a student parameter
    assert any(p is projections[0].weight for group in optimizer.param_groups for p in group["params"])
    loss = DistillLoss(config, teacher)
    first = float(loss(student, batch).parts["feature"])
    before = projections[0].weight.detach().clone()
    for _ in range(10):
        optimizer.zero_grad()
        loss(student, batch).total.backward()
        optimizer.step()
    assert float(loss(student, batch).parts["feature"]) < 0.5 * first
    assert not torch.equal(before, projections[0].weight)
    exported = exported_state_dict(student.state_dict())
    assert any(key.startswith(PROJECTIONS) for key in student.state_dict())
    assert not any(key.startswith(PROJECTIONS) for key in exported) and "model.embed_tokens.weight" in exported


def test_a_different_vocabulary_is_named():
    student = {"a": 0, "b": 1, "c": 2}
    assert vocabulary_differences(student, dict(student), {"eos_token": "c"}, {"eos_token": "c"}) == []
    problems = vocabulary_differences(student, {"a": 0, "b": 2, "c": 1, "d": 3}, {"eos_token": "c"}, {"eos_token": "d"})
    assert problems[0] == "vocabulary size 3 (student) vs 4 (teacher)"
    assert "3 tokens with other ids" in problems[1] and "'b': 1 vs 2" in problems[1]
    assert problems[2] == "special tokens differ (student vs teacher): eos_token: 'c' vs 'd'"


def test_check_tokenizers_on_real_tokenizers(byte_tokenizer, llama3_tokenizer):
    check_tokenizers(byte_tokenizer, byte_tokenizer, "same")
    with pytest.raises(TokenizerMismatchError, match="the teacher llama.*vocabulary size|special tokens"):
        check_tokenizers(byte_tokenizer, llama3_tokenizer, "llama")


def stored(sampled, k=2):
    n = len(sampled)
    return TopK(np.arange(n * k, dtype=np.int32).reshape(n, k), np.full((n, k), -1.0, np.float16), np.asarray(sampled))


def test_alignment_of_stored_rows():
    rows = align_rows([5, 6, 7], False, stored([5, 6, 7]), {7})
    assert rows.ids.shape == (3, 2)
    closed = align_rows([5, 6, 7], False, stored([5, 6]), {7})  # the template closed the turn: a padding row
    assert closed.ids[-1].tolist() == [-1, -1] and np.isneginf(closed.logprobs[-1]).all()
    assert align_rows([5, 6], True, stored([5, 6, 7]), {7}).ids.shape == (2, 2)  # truncated: the prefix
    assert "token 1 of the response is 9, the teacher sampled 6" in align_rows([5, 9, 7], False, stored([5, 6, 7]), {7})
    assert "4 response tokens but 2 sampled" in align_rows([5, 6, 7, 7], False, stored([5, 6]), {7})
    assert "2 response tokens but 3 sampled" in align_rows([5, 6], False, stored([5, 6, 7]), {7})


def test_sft_loading_attaches_rows_and_names_file_line_and_field(byte_tokenizer, tmp_path):
    messages = [Message(role="user", content="Compute 1 + 2."), Message(role="assistant", content="\\boxed{3}")]
    path = tmp_path / "verified.jsonl"
    write_jsonl(path, [SFTExample(messages=messages, problem_id="p1", sample_index=1)])
    encoded = encode_conversation(byte_tokenizer, [m.model_dump() for m in messages])
    good = {("p1", 1): stored(encoded.response_ids)}
    examples, _ = load_sft_examples([path], byte_tokenizer, 256, teacher_topk=good)
    assert examples[0].teacher.ids.shape == (examples[0].num_target_tokens, 2)
    with pytest.raises(TeacherAlignmentError, match=rf"{path}:1: messages.1.content: the student's token 0"):
        load_sft_examples([path], byte_tokenizer, 256, teacher_topk={("p1", 1): stored([0, *encoded.response_ids[1:]])})
    with pytest.raises(TeacherAlignmentError, match=rf"{path}:1: problem_id/sample_index: no stored"):
        load_sft_examples([path], byte_tokenizer, 256, teacher_topk={("p1", 0): good[("p1", 1)]})


def test_top_k_store_round_trip_resume_and_size(tmp_path):
    logprobs = [{"3": -0.1, "5": -2.5, "9": -4.0}, {"1": -0.5, "2": -1.0}]  # row 1: sampled 9 beyond k=2
    packed = pack_topk(logprobs, [9, 1], k=2)
    assert packed.ids.tolist() == [[3, 5], [1, 2]] and packed.logprobs.dtype == np.float16
    directory = chunk_dir(tmp_path / "shard-00000-of-00001.jsonl")
    assert directory.name == "shard-00000-of-00001.topk"
    writer = TopKWriter(directory)
    writer.add(("p0", 0), packed)
    writer.flush()
    again = TopKWriter(directory)  # a resumed run appends a new chunk; the last rows of a key win
    again.add(("p0", 0), pack_topk(logprobs[:1], [3], k=2))
    again.add(("p1", 1), packed)
    again.flush()
    found = read_chunks([directory])
    assert set(found) == {("p0", 0), ("p1", 1)} and found[("p0", 0)].sampled.tolist() == [3]
    assert found[("p1", 1)].ids.tolist() == [[3, 5], [1, 2]]
    size, tokens = store_bytes_per_token([directory])
    assert tokens == 5 and size > 0  # every stored row, superseded ones too


def test_distill_config_is_validated_with_clear_errors():
    with pytest.raises(ConfigError) as error:
        validate_groups(
            {"train": {"name": "x", "init": "m", "loss": "distill", "distill": {"teacher": "online", "kind": "kl"}}},
            {"train": __import__("sky_distill.config", fromlist=["TrainConfig"]).TrainConfig},
        )
    assert "train.distill.kind: Input should be 'forward_kl', 'reverse_kl', 'jsd' or 'tv'" in str(error.value)
    with pytest.raises(ValueError, match="teacher 'online' needs distill.teacher_path"):
        DistillConfig(teacher="online")
    with pytest.raises(ValueError, match="feature distillation needs teacher 'online'"):
        DistillConfig(features={"weight": 1.0, "layers": [[1, 1]]})
    with pytest.raises(ValueError, match="nothing to learn"):
        DistillConfig(ce_weight=0, kd_weight=0)
