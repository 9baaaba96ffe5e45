import json

import pytest

from sky_distill.records import (
    Problem,
    RecordFileError,
    Trace,
    append_jsonl,
    read_jsonl,
    read_jsonl_strict,
    repair_torn_tail,
    write_jsonl,
)


def make_trace(index: int = 0) -> Trace:
    return Trace(
        problem_id="p1",
        sample_index=index,
        source="s",
        messages=[{"role": "user", "content": "q"}],
        response="r",
        model="m",
        engine="vllm",
        engine_version="v",
        sampling={"n": 1},
        prompt_tokens=3,
        completion_tokens=4,
        finish_reason="stop",
        truncated=False,
    )


def test_round_trip(tmp_path):
    path = tmp_path / "t.jsonl"
    write_jsonl(path, [make_trace(0), make_trace(1)])
    records, errors = read_jsonl(path, Trace)
    assert errors == []
    assert [record.sample_index for record in records] == [0, 1]
    assert records[0] == make_trace(0)


def test_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [
        {"id": "a", "problem": "x", "source": "s"},
        {"id": "b", "problem": "", "source": "s"},  # empty problem
        "not json",
        {"id": "c", "problem": "y", "source": "s", "answer_type": "essay"},  # bad enum
        {"id": "d", "problem": "z", "source": "s", "unknown": 1},  # unknown field
    ]
    path.write_text("\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n")
    records, errors = read_jsonl(path, Problem)
    assert [record.id for record in records] == ["a"]
    assert [(error.line, error.field) for error in errors] == [
        (2, "problem"),
        (3, "<json>"),
        (4, "answer_type"),
        (5, "unknown"),
    ]
    assert str(errors[0]).startswith(f"{path}:2: problem:")
    with pytest.raises(RecordFileError, match=r"p.jsonl:2: problem: .*\(and 3 more\)"):
        read_jsonl_strict(path, Problem)


def test_torn_tail_is_cut_and_whole_lines_kept(tmp_path):
    path = tmp_path / "t.jsonl"
    append_jsonl(path, [make_trace(0), make_trace(1)])
    whole = path.read_bytes()
    with open(path, "ab") as handle:
        handle.write(b'{"problem_id": "p1", "sample_in')
    assert repair_torn_tail(path) == len(b'{"problem_id": "p1", "sample_in')
    assert path.read_bytes() == whole
    assert repair_torn_tail(path) == 0


def test_torn_only_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"partial')
    repair_torn_tail(path)
    assert path.read_bytes() == b""
