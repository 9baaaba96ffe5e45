"""Layout detection and conversion per public layout, the unknown-layout error, sources and weights."""

from __future__ import annotations

import json

import pytest

from sky_distill.data_sources.layouts import LayoutError, detect_layout, row_samples
from sky_distill.data_sources.samples import SourceReport, UnknownLayoutError, iter_samples
from sky_distill.data_sources.sources import SourceError, file_rows, parse_sources, source_files
from sky_distill.data_sources.train_data import copies, prepare_train_data, sft_example
from sky_distill.records import SFTExample, read_jsonl_strict

EXPECTED_LAYOUTS = {
    "sky_t1_data_17k.json": ("sharegpt", "sky_t1"),
    "bespoke_stratos.jsonl": ("sharegpt", "sky_t1"),
    "openthoughts.parquet": ("sharegpt", "sky_t1"),
    "sharegpt_classic.jsonl": ("sharegpt", "think"),
    "openai_messages.jsonl": ("openai_messages", "think"),
    "s1k.parquet": ("s1k", "separate_channel"),
    "openr1_math.jsonl": ("openr1_math", "think"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_LAYOUTS))
def test_each_file_is_read_and_its_layout_and_thoughts_named(layout_files, fixture_rows, name):
    source = parse_sources(str(layout_files[name]))[0]
    report = SourceReport(source.label, source.path, source.weight)
    samples = [sample for _, _, sample, _ in iter_samples(source, report)]
    layout, thoughts = EXPECTED_LAYOUTS[name]
    assert report.layout == layout
    assert set(report.thought_formats) == {thoughts}
    per_row = 2 if layout == "openr1_math" else 1
    assert report.rows == len(fixture_rows) and len(samples) == per_row * len(fixture_rows) and report.bad_rows == 0
    first = samples[0]
    assert first.problem == fixture_rows[0]["problem"]
    assert fixture_rows[0]["thought"][:200] in (first.reasoning or first.response)


def test_sharegpt_keeps_the_top_level_system_prompt_and_maps_roles(layout_files):
    sky = json.loads(layout_files["sky_t1_data_17k.json"].read_text())[0]
    [sample] = row_samples(sky, "sharegpt", ("f", 1))
    assert [turn["role"] for turn in sample.prompt] == ["system", "user"]
    classic = json.loads(layout_files["sharegpt_classic.jsonl"].read_text().splitlines()[0])
    [sample] = row_samples(classic, "sharegpt", ("f", 1))
    assert [turn["role"] for turn in sample.prompt] == ["system", "user"] and sample.row_id == classic["id"]


def test_openr1_generations_carry_their_correctness_and_incomplete_ones_are_cut():
    row = {
        "problem": "1+1?",
        "answer": "2",
        "generations": ["<think>a</think> \\boxed{2}", "<think>b</think> \\boxed{3}", "<think>c"],
        "correctness_math_verify": [True, False, False],
        "correctness_llama": [None, True, None],
        "is_reasoning_complete": [True, True, False],
    }
    samples = row_samples(row, "openr1_math", ("f", 1))
    assert [s.correct for s in samples] == [True, True, False]  # either judge's yes counts
    assert [s.truncated for s in samples] == [False, False, True]
    with pytest.raises(LayoutError, match=r"f:1: correctness_math_verify: expected a list of 3 values"):
        row_samples({**row, "correctness_math_verify": [True]}, "openr1_math", ("f", 1))


def test_an_unknown_layout_names_file_line_and_the_fields_found(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"prompt": "hi", "completion": "yo"}\n')
    source = parse_sources(str(path))[0]
    with pytest.raises(
        UnknownLayoutError, match=rf"{path}:1: <layout>: no known layout .* fields found: completion, prompt"
    ):
        list(iter_samples(source, SourceReport("mine", str(path), 1.0)))


def test_a_row_breaking_the_detected_layout_is_counted_and_named(tmp_path):
    path = tmp_path / "chat.jsonl"
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    bad = {"messages": [{"role": "user", "content": "q"}, {"role": "robot", "content": "a"}]}
    path.write_text("\n".join([*(json.dumps(row) for row in (good, bad, good)), "{not json"]) + "\n")
    report = SourceReport("chat", str(path), 1.0)
    samples = list(iter_samples(parse_sources(str(path))[0], report))
    assert len(samples) == 2 and report.bad_rows == 2
    assert report.errors[0] == f"{path}:2: messages.1.role: unknown role 'robot' (expected system, user, assistant)"
    assert report.errors[1].startswith(f"{path}:4: <json>: not valid JSON")


def test_the_fields_layout_reads_a_mapping(tmp_path):
    row = {"q": "2+2?", "out": "<think>add</think> \\boxed{4}", "gold": "4", "ok": "True"}
    fields = {"problem": "q", "response": "out", "answer": "gold", "correct": "ok"}
    assert detect_layout(row) is None and detect_layout(row, fields) == "fields"
    [sample] = row_samples(row, "fields", ("f", 3), fields)
    assert (sample.problem, sample.answer, sample.correct) == ("2+2?", "4", True)


@pytest.mark.parametrize("style", ["raw", "think", "sky_t1"])
def test_a_thinking_channel_becomes_the_chosen_format(style):
    row = {"question": "Q", "solution": "4", "thinking_trajectories": ["step 1", "step 2"], "attempt": "It is 4."}
    [sample] = row_samples(row, "s1k", ("f", 1))
    content = sft_example(sample, "s1k", 0, style, {}).messages[-1].content
    expected = {
        "raw": "step 1\nstep 2\n\nIt is 4.",
        "think": "<think>\nstep 1\nstep 2\n</think>\n\nIt is 4.",
        "sky_t1": "<|begin_of_thought|>\n\nstep 1\nstep 2\n\n<|end_of_thought|>\n\n"
        "<|begin_of_solution|>\n\nIt is 4.\n\n<|end_of_solution|>",
    }[style]
    assert content == expected


def test_sources_from_strings_mappings_globs_and_folders(layout_files, tmp_path):
    folder = layout_files["s1k.parquet"].parent
    files = source_files(parse_sources(str(folder))[0])
    assert {path.name for path in files} == set(EXPECTED_LAYOUTS)
    assert [p.name for p in source_files(parse_sources(f"{folder}/*.parquet")[0])] == [
        "openthoughts.parquet",
        "s1k.parquet",
    ]
    hub, local = parse_sources(["bespokelabs/Bespoke-Stratos-17k", {"path": str(folder / "s1k.parquet"), "weight": 2}])
    assert (hub.hub, hub.split, local.weight) == ("bespokelabs/Bespoke-Stratos-17k", "train", 2)
    twice = parse_sources([str(folder / "s1k.parquet"), str(folder / "s1k.parquet")])
    assert [s.label for s in twice] == ["s1k", "s1k_2"]
    with pytest.raises(SourceError, match=r"train.data\[0\]: a data source needs exactly one of path or hub"):
        parse_sources([{"weight": 2}])
    with pytest.raises(SourceError, match="no .jsonl, .json, .parquet files there"):
        source_files(parse_sources(str(tmp_path / "none*.jsonl"))[0])


def test_a_json_array_is_numbered_by_row(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([{"a": 1}, 5]))
    rows = list(file_rows(path))
    assert rows[0] == (str(path), 1, {"a": 1})
    assert str(rows[1][2]) == f"{path}:2: <json>: expected a JSON object, got int"


def test_mixing_weights_repeat_and_sample_examples(layout_files, tmp_path):
    import random

    rng = random.Random(0)
    assert sum(copies(0.25, rng) for _ in range(4000)) == pytest.approx(1000, rel=0.1)
    assert {copies(2.0, rng) for _ in range(10)} == {2}
    data = [{"path": str(layout_files["openai_messages.jsonl"]), "weight": 3}, str(layout_files["openr1_math.jsonl"])]
    files, report = prepare_train_data(data, "think", 0, tmp_path)
    chat, openr1 = report["sources"]
    assert chat["written"] == 3 * chat["samples"] == 24
    assert openr1["written"] + openr1["dropped"].get("marked_incorrect", 0) == openr1["samples"]
    examples = read_jsonl_strict(files[0], SFTExample)
    assert len(examples) == 24 and examples[0].metadata["layout"] == "openai_messages"
    assert json.loads((tmp_path / "data_sources.json").read_text())["sources"][0]["layout"] == "openai_messages"


def test_a_hub_source_is_read_through_datasets(layout_files, tmp_path):
    """`hub:` goes through `datasets.load_dataset(id, config, split=...)`; a local dataset folder stands in."""
    import shutil

    folder = tmp_path / "s1k-dataset"
    (folder / "data").mkdir(parents=True)
    shutil.copy(layout_files["s1k.parquet"], folder / "data" / "train-00000-of-00001.parquet")
    source = parse_sources([{"hub": str(folder), "split": "train", "name": "s1k_hub"}])[0]
    report = SourceReport(source.label, str(folder), 1.0)
    samples = list(iter_samples(source, report))
    assert report.layout == "s1k" and len(samples) == report.rows == 8
    assert samples[0][0] == f"hf://{folder}/default/train" and samples[0][1] == 1
