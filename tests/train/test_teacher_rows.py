"""Offline KD rows read for training: only the SFT file's samples, memory-mapped, equal to the store."""

from __future__ import annotations

import numpy as np

from sky_distill.generate.topk_store import TopKRows, TopKWriter, build_row_cache, chunk_dir, pack_topk, read_chunks
from sky_distill.records import Message, SFTExample, write_jsonl
from sky_distill.train.data import collate_teacher, encode_conversation
from sky_distill.train.dataset import load_sft_examples, open_teacher_rows
from sky_distill.train.teacher_signal import StoredTeacherRows


def _rows(sampled: list[int], k: int = 3, shift: float = 0.0):
    logprobs = [{str(token + j): -0.5 * j - shift for j in range(k)} for token in sampled]
    return pack_topk(logprobs, sampled, k)


def _store(tmp_path, samples: dict[tuple[str, int], list[int]]):
    directory = chunk_dir(tmp_path / "shard-00000-of-00001.jsonl")
    writer = TopKWriter(directory)
    for key, sampled in samples.items():
        writer.add(key, _rows(sampled, shift=1.0))  # superseded by the next chunk's rows of the same key
    writer.flush()
    again = TopKWriter(directory)
    for key, sampled in samples.items():
        again.add(key, _rows(sampled))
    again.flush()
    return directory


def test_cache_holds_only_wanted_samples_last_chunk_wins_and_is_reused(tmp_path):
    samples = {("p0", 0): [5, 6, 7], ("p0", 1): [8, 9], ("p1", 0): [4] * 40, ("rejected", 3): [1, 2]}
    directory = _store(tmp_path, samples)
    wanted = [("p0", 0), ("p1", 0), ("p0", 1), ("not-stored", 0)]
    cache = build_row_cache([directory], wanted, tmp_path / "cache")
    rows, expected = TopKRows(cache), read_chunks([directory])
    assert len(rows) == 3 and ("rejected", 3) not in rows and ("not-stored", 0) not in rows
    for key in wanted[:3]:
        stored = rows[key]
        assert stored.sampled.tolist() == expected[key].sampled.tolist()
        assert np.array_equal(stored.ids.read(), expected[key].ids)
        assert np.array_equal(stored.logprobs.read(), expected[key].logprobs)  # the last chunk's, not the first's
    assert rows.get(("rejected", 3)) is None
    assert len(TopKRows(build_row_cache([directory], [("not-stored", 0)], tmp_path / "none"))) == 0
    marker = (cache / "COMPLETE.json").stat().st_mtime_ns
    assert build_row_cache([directory], reversed(wanted), tmp_path / "cache") == cache
    assert (cache / "COMPLETE.json").stat().st_mtime_ns == marker  # same chunks, same samples: reused
    writer = TopKWriter(directory)
    writer.add(("p0", 1), _rows([8, 9], shift=2.0))
    writer.flush()  # a new chunk: rebuilt, and its rows win
    rebuilt = TopKRows(build_row_cache([directory], wanted, tmp_path / "cache"))
    assert np.array_equal(rebuilt[("p0", 1)].logprobs.read(), read_chunks([directory])[("p0", 1)].logprobs)


def test_training_examples_read_the_same_rows_from_the_cache_as_from_the_store(byte_tokenizer, tmp_path):
    conversations = {
        ("p0", 0): "\\boxed{3}",
        ("p1", 2): "The sum is 12, so \\boxed{12}",
    }
    records, samples = [], {}
    for (problem_id, index), answer in conversations.items():
        messages = [Message(role="user", content=f"Problem {problem_id}"), Message(role="assistant", content=answer)]
        records.append(SFTExample(messages=messages, problem_id=problem_id, sample_index=index))
        response = encode_conversation(byte_tokenizer, [m.model_dump() for m in messages]).response_ids
        samples[(problem_id, index)] = response[:-1] if index == 2 else response  # p1: the template closes the turn
        closing = response[-1]
    samples[("rejected", 0)] = [1, 2, 3]
    directory = _store(tmp_path, samples)
    sft = tmp_path / "verified.jsonl"
    write_jsonl(sft, records)
    end_of_turn = {byte_tokenizer.eos_token_id, closing}
    dense, _ = load_sft_examples(
        [sft], byte_tokenizer, 256, end_of_turn=end_of_turn, teacher_topk=read_chunks([directory])
    )
    mapped_rows = open_teacher_rows([directory], [sft], tmp_path / "teacher_rows")
    assert len(mapped_rows) == 2  # the rejected trace's rows are not copied
    mapped, _ = load_sft_examples([sft], byte_tokenizer, 256, end_of_turn=end_of_turn, teacher_topk=mapped_rows)
    assert all(isinstance(example.teacher, StoredTeacherRows) for example in mapped)
    assert mapped[1].teacher.padding == 1
    for left, right in zip(dense, mapped):
        assert np.array_equal(left.teacher.ids, right.teacher.ids)
        assert np.array_equal(left.teacher.logprobs, right.teacher.logprobs)
    batch, expected = collate_teacher(mapped), collate_teacher(dense)
    assert all(np.array_equal(batch[name].numpy(), expected[name].numpy()) for name in expected)
