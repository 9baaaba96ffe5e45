"""`sky-distill table`: markdown, CSV and LaTeX with published baselines cited per number, and the
paired comparison of two runs on the same problems."""

import csv
import io
import json

import pytest

from sky_distill.evaluate.baselines import BaselineError, load_baselines, metric_matches, read_baseline_file
from sky_distill.evaluate.tables import build_table, collect_summaries, latex_table, markdown_table
from tests.conftest import compose_config


def run_table(run_dir, *overrides):
    from sky_distill.evaluate.table_stage import run

    root = run_dir.parent.parent
    return run(compose_config([f"paths.root={root}", "seeds=null", *overrides], stage="table"))


def test_tables_render_runs_and_cited_baselines(dev_run):
    run_dir, _, _ = dev_run
    result = run_table(run_dir, "eval.table.compare=[dev,dev_cut]")
    markdown = (run_dir / "tables" / "results.md").read_text()
    lines = markdown.splitlines()
    assert lines[0].startswith(
        "| model | aime24 avg@1 (%) | amc23 avg@1 (%) | math500 avg@1 (%)"
    )  # n: the fewest samples any problem has
    assert "of 500 missing)" in lines[2]  # the dev set is a partial math500, and the table says so
    rows = [line.split("|")[1].strip() for line in lines[2:] if line.startswith("|")]
    assert rows[:2] == ["dev", "dev_cut"]
    r1 = next(line for line in lines if line.startswith("| DeepSeek-R1-Distill-Qwen-32B (reported ["))
    assert "72.6 [" in r1 and "94.3 [" in r1  # AIME 2024 and MATH-500 as published
    footnotes = [line for line in lines if line.startswith("[")]
    marker = r1.split("(reported [")[1].split("]")[0]
    source = next(line for line in footnotes if line.startswith(f"[{marker}]"))
    assert "github.com/deepseek-ai/DeepSeek-R1" in source
    for line in lines:  # every published number carries a source marker that is listed
        if "(reported [" in line:
            for cell in line.split("|")[2:-1]:
                assert cell.strip() == "–" or any(cell.strip().endswith(f"[{i}]") for i in range(1, len(footnotes) + 1))
    tex = (run_dir / "tables" / "results.tex").read_text()
    assert tex.startswith("\\begin{tabular}{lrrrrr}") and "\\bottomrule" in tex and "minerva\\_math" in tex
    assert "72.6\\textsuperscript{" in tex
    parsed = list(csv.DictReader(io.StringIO((run_dir / "tables" / "results.csv").read_text())))
    dev_math = next(r for r in parsed if r["model"] == "dev" and r["benchmark"] == "math500")
    summary = json.loads((run_dir / "eval" / "dev" / "math500" / "summary.json").read_text())
    assert float(dev_math["value"]) == pytest.approx(summary["eval/math500/avg@n"])
    assert float(dev_math["unparsed_rate"]) == pytest.approx(summary["eval/math500/unparsed_rate"])
    assert float(dev_math["mean_tokens"]) == pytest.approx(summary["eval/math500/mean_tokens"])
    assert any(r["kind"] == "published" and r["source"] for r in parsed)
    assert "| dev | math500 |" in (run_dir / "tables" / "details.md").read_text()
    # the paired comparison: the cut responses are worse on the same problems
    comparison = json.loads((run_dir / "tables" / "compare_dev_vs_dev_cut.json").read_text())
    amc = comparison["amc23"]
    assert amc["same_data"] and amc["problems"] == summary_problems(run_dir, "amc23")
    assert amc["difference"] > 0 and amc["ci_low"] <= amc["difference"] <= amc["ci_high"]
    assert amc["mcnemar_b_only"] <= amc["mcnemar_a_only"]
    assert "Paired comparison: A = dev, B = dev_cut" in result["table"]


def summary_problems(run_dir, benchmark):
    return json.loads((run_dir / "eval" / "dev" / benchmark / "summary.json").read_text())["problems"]


def test_other_runs_are_labelled_and_baselines_can_be_chosen(dev_run, tmp_path):
    run_dir, _, _ = dev_run
    summaries = collect_summaries(run_dir / "eval", "first")
    table = build_table(summaries, "avg@n", baselines=load_baselines(["sky_t1_preview"]))
    assert table.rows[0] == "first/dev" and "Sky-T1-32B-Preview (reported [1])" in table.rows
    assert len(table.footnotes) == 1 and "huggingface.co/NovaSky-AI/Sky-T1-32B-Preview" in table.footnotes[0]
    assert markdown_table(build_table(summaries, "avg@n")).count("\n") == 1 + len(table.rows) - 4
    with pytest.raises(BaselineError, match="unknown baseline 'nope'"):
        load_baselines(["nope"])


def test_published_numbers_are_what_the_sources_state():
    scores = {(s.model, s.benchmark, s.group, s.metric, s.source.key): s.value for s in load_baselines()}
    assert scores[("DeepSeek-R1-Distill-Qwen-32B", "aime24", None, "pass@1", "deepseek_r1_distill")] == 72.6
    assert scores[("DeepSeek-R1-Distill-Llama-70B", "aime24", None, "cons@64", "deepseek_r1_distill")] == 86.7
    assert scores[("Sky-T1-32B-Preview", "livecodebench", "difficulty=hard", "accuracy", "sky_t1_preview")] == 17.9
    assert scores[("QwQ-32B-Preview", "math500", None, "accuracy", "qwq_32b_preview")] == 90.6
    assert metric_matches("avg@n", "pass@1") and metric_matches("maj@64", "cons@64")
    assert not metric_matches("avg@n", "cons@64")


def test_a_baseline_without_a_source_is_refused(tmp_path):
    path = tmp_path / "anon.yaml"
    path.write_text("source: {title: someone}\nscores: {M: {aime24/pass@1: 50}}\n")
    with pytest.raises(BaselineError, match="source.url is missing"):
        read_baseline_file(path)
    path.write_text("source: {title: t, url: u}\nscores: {M: {aime24/pass@1: 150}}\n")
    with pytest.raises(BaselineError, match="expected a percentage"):
        read_baseline_file(path)


def test_latex_escapes_names():
    summaries = [{"model": "a_b&c", "benchmark": "x_y", "eval/x_y/avg@n": 0.5, "eval/x_y/avg@n_stderr": 0.1}]
    tex = latex_table(build_table(summaries))
    assert "a\\_b\\&c & $50.0 \\pm 10.0$" in tex


def test_runs_without_common_problems_cannot_be_paired():
    from sky_distill.errors import SkyDistillError
    from sky_distill.evaluate.compare import compare_samples
    from sky_distill.records import EvalSample

    def sample(pid):
        return EvalSample(
            benchmark="b", problem_id=pid, sample_index=0, model="m", response="", correct=True,
            status="correct", completion_tokens=1, finish_reason="stop", truncated=False,
        )  # fmt: skip

    with pytest.raises(SkyDistillError, match="share no problem ids"):
        compare_samples([sample("x")], [sample("y")])
    paired = compare_samples([sample("x"), sample("z")], [sample("x")])
    assert paired["problems"] == 1 and paired["only_in_a"] == 1 and paired["only_in_b"] == 0
