"""End to end on real engines: an external trace file re-verified by `sky-distill verify`, then one
2-rank DeepSpeed run over a file in every public layout (mixing weights) plus the verified traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sky_distill.data_sources.layout_examples import LAYOUT_FILES
from sky_distill.runs import completion
from sky_distill.tracking import read_metrics
from tests.conftest import compose_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reverified(layout_files, fixture_rows, tmp_path_factory):
    """`sky-distill verify` on an OpenThoughts-layout file and an OpenR1-Math file, no generation in the run."""
    from sky_distill.verify.stage import run

    run_dir = tmp_path_factory.mktemp("run")
    traces = f"[{layout_files['openthoughts.parquet']},{layout_files['openr1_math.jsonl']}]"
    cfg = compose_config([f"paths.run_dir={run_dir}", f"verify.traces={traces}", "verify.sft.format=think"], "verify")
    return run_dir, run(cfg)


def test_an_external_trace_set_is_reverified_and_curated(reverified, fixture_rows):
    run_dir, report = reverified
    labelled = [str(row["correct"]).lower() == "true" for row in fixture_rows]
    samples = len(fixture_rows) * 3  # one OpenThoughts response, two OpenR1 generations per problem
    assert report["verify/samples"] == samples
    external = report["inputs"]["external"]["sources"]
    assert [(s["name"], s["layout"]) for s in external] == [
        ("openthoughts", "sharegpt"),
        ("openr1_math", "openr1_math"),
    ]
    by_source = report["verify/by_group"]
    openthoughts = by_source["source=openthoughts"]
    assert openthoughts["samples"] == len(fixture_rows)
    # the fixture's traces carry their upstream grader's label; our verifier agrees on most of them
    assert abs(openthoughts["correct"] - sum(labelled)) <= 2
    assert {key for key in by_source if key.startswith("source=openr1_math/")} == {
        f"source=openr1_math/{row['benchmark']}" for row in fixture_rows
    }
    kept = [json.loads(line) for line in (run_dir / "verify" / "sft" / "verified.jsonl").open()]
    assert len(kept) == report["verify/kept"] > 0
    assert all(example["messages"][-1]["content"].startswith("<think>\n") for example in kept)
    assert completion(run_dir / "verify") is not None


@pytest.fixture(scope="module")
def trained(reverified, layout_files, tiny_model_dir):
    """`sky-distill train` over one file per layout (weights 0.5 for parquet, 1 else) plus the re-verified traces (2)."""
    from sky_distill.train.stage import run

    run_dir, _ = reverified
    data = [
        {"path": str(path), "weight": 0.5 if name.endswith(".parquet") else 1} for name, path in layout_files.items()
    ]
    data.append({"path": str(run_dir / "verify" / "sft" / "verified.jsonl"), "name": "reverified", "weight": 2})
    overrides = [
        f"paths.run_dir={run_dir}",
        "train=tiny",
        f"train.init={tiny_model_dir}",
        "train.name=byod",
        "train.data_format=sky_t1",
        "train.max_steps=3",
        "train.global_batch_size=8",
        "train.micro_batch_size=2",
        "train.max_seq_len=512",
        "train.log_every=1",
        "train.num_procs=2",
    ]
    cfg = compose_config(overrides, "train")
    cfg.train.data = data  # the form a YAML list of mappings takes
    run(cfg)
    return Path(run_dir) / "train" / "byod"


def test_the_student_trains_on_every_layout_with_weights_on_two_ranks(trained):
    output = trained
    sources = json.loads((output / "data" / "data_sources.json").read_text())["sources"]
    layouts = {s["name"]: s["layout"] for s in sources}
    assert layouts == {
        **{Path(name).stem: layout for name, (layout, _) in LAYOUT_FILES.items()},
        "reverified": "openai_messages",
    }
    for source in sources:
        expected = source["samples"] - sum(source["dropped"].values())
        if source["weight"] == 1:
            assert source["written"] == expected
        elif source["weight"] == 2:
            assert source["written"] == 2 * expected
    rows = read_metrics(output / "metrics.jsonl")
    assert [row["step"] for row in rows] == [1, 2, 3]
    data_report = json.loads((output / "data_report.json").read_text())
    assert data_report["train/data/records"] == data_report["train/data/kept"] == sum(s["written"] for s in sources)
    assert (output / "final" / "config.json").exists()
    examples = [json.loads(line) for line in (output / "data" / "s1k.jsonl").open()]
    assert examples[0]["messages"][-1]["content"].startswith("<|begin_of_thought|>")


def test_export_round_trips_through_datasets_and_pushes_to_a_folder_hub(reverified, trained, tiny_model_dir, tmp_path):
    """`sky-distill export`: parquet + card that `datasets.load_dataset` opens, a model card, a push (file:// hub)."""
    import datasets

    from sky_distill.export.stage import run

    run_dir, report = reverified
    hub = tmp_path / "hub"
    overrides = [
        f"paths.run_dir={run_dir}",
        "export.model=byod",
        "export.push=true",
        "export.dataset_repo=me/reverified",
        "export.model_repo=me/byod",
        f"export.endpoint=file://{hub}",
    ]
    summary = run(compose_config(overrides, "export"))
    kept = [json.loads(line) for line in (run_dir / "verify" / "sft" / "verified.jsonl").open()]
    for where in (run_dir / "export" / "dataset", hub / "datasets" / "me" / "reverified"):
        rows = datasets.load_dataset(str(where), split="train")  # default cache: exports must not collide
        assert len(rows) == len(kept) == summary["export/dataset"]["examples"]
        assert rows[0]["messages"] == kept[0]["messages"] and json.loads(rows[0]["metadata"]) == kept[0]["metadata"]
    card = (run_dir / "export" / "dataset" / "README.md").read_text()
    assert f"version {report['verifier_version']}" in card
    assert f"acceptance {report['verify/acceptance_rate']:.1%}" in card
    assert "| openthoughts | sharegpt |" not in card and "openthoughts" in card
    assert "Not decontaminated" in card
    model_card = (hub / "models" / "me" / "byod" / "README.md").read_text()
    assert f"base_model: {tiny_model_dir}" in model_card
    assert "## Training curve\n3 steps" in model_card and "datasets:\n- me/reverified" in model_card
    assert (hub / "models" / "me" / "byod" / "model.safetensors").exists()
