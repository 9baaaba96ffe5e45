"""The verify notebook runs end to end on a real verify run and saves its plots."""

import pytest

from tests.conftest import REPO

NOTEBOOK = REPO / "notebooks" / "verify_report.ipynb"

pytestmark = pytest.mark.slow


def test_verify_report_notebook_executes(verify_run, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    run_dir, generated, report = verify_run
    figures = tmp_path / "figures"
    monkeypatch.setenv("SKY_DISTILL_RUN_DIR", str(run_dir))
    monkeypatch.setenv("SKY_DISTILL_FIGURES", str(figures))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    problems = len({trace.problem_id for trace in generated["traces"]})
    assert f"{len(generated['traces'])} traces of {problems} problems" in outputs
    assert f"kept {report['verify/kept']}" in outputs
    assert "decontaminated problems by benchmark" in outputs and "problem broken-gold" in outputs
    for name in ("acceptance_by_source.png", "trace_lengths.png", "truncation.png"):
        assert (figures / name).stat().st_size > 5000, name
