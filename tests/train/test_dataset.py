"""Bad training input is counted by reason and named by file and line, never dropped silently."""

import json

import pytest

from sky_distill.train.dataset import load_sft_examples
from sky_distill.train.templates import end_of_turn_ids


def chat(answer, user="Compute 1 + 2."):
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


@pytest.fixture
def messy_file(tmp_path):
    lines = [
        json.dumps(chat("3")),  # 1: fine
        "{not json",  # 2
        json.dumps({"problem_id": "p"}),  # 3: no messages
        json.dumps(chat("   ")),  # 4: empty response
        json.dumps({"messages": [{"role": "user", "content": "hi"}]}),  # 5: no assistant turn
        json.dumps(chat("x" * 200)),  # 6: over-long: a 33-token prompt, 200 + EOS
        json.dumps(chat("4", user="y" * 300)),  # 7: the prompt alone is over-long
        json.dumps({"messages": [{"role": "user"}, {"role": "assistant", "content": "3"}]}),  # 8: no content
        "",  # blank lines are skipped
        json.dumps(chat("5")),  # 10: fine
    ]
    path = tmp_path / "verified.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_bad_record_is_counted_and_named(messy_file, byte_tokenizer):
    examples, report = load_sft_examples([messy_file], byte_tokenizer, 128, "truncate", end_of_turn_ids(byte_tokenizer))
    assert report.records == 9 and report.kept == 3 and len(examples) == 3
    assert report.rejected_by_reason == {
        "invalid_record": 3,
        "empty_response": 1,
        "no_response": 1,
        "no_response_within_max_seq_len": 1,
    }
    where = "\n".join(report.errors)
    for expected in (
        f"{messy_file}:2: <json>: not valid JSON",
        f"{messy_file}:3: messages: Field required",
        f"{messy_file}:4: messages.1.content: empty response",
        f"{messy_file}:5: messages: the last message must be the assistant response",
        f"{messy_file}:7: messages: no response tokens left within max_seq_len 128",
        f"{messy_file}:8: messages.0.content: Field required",
    ):
        assert expected in where
    assert report.truncated_examples == 1
    assert report.truncated == [f"{messy_file}:6: 234 tokens, 106 cut"]
    assert report.truncated_tokens == 106
    assert report.as_dict()["train/data/rejected"] == 6
    assert "3 kept, 6 rejected (1 empty_response, 3 invalid_record" in report.summary_line()


def test_overlong_records_can_be_dropped_instead(messy_file, byte_tokenizer):
    examples, report = load_sft_examples([messy_file], byte_tokenizer, 128, "drop")
    assert report.kept == 2 and report.truncated_examples == 0
    assert report.rejected_by_reason["overlong"] == 2  # line 6, and line 7 (its prompt alone)
    assert f"{messy_file}:6: messages: 234 tokens exceed max_seq_len 128 (overlong: drop)" in report.errors
