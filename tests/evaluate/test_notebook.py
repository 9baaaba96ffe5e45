"""The comparison notebook runs end to end on real eval results and saves its plots."""

import os

import pytest

from tests.conftest import REPO

NOTEBOOK = REPO / "notebooks" / "compare_evals.ipynb"


def test_compare_evals_notebook_executes(dev_run, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    run_dir, _, _ = dev_run
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
    assert "2 models, 5 benchmarks, 400 samples" in outputs
    for name in ("accuracy_per_benchmark.png", "accuracy_vs_length.png"):
        assert (figures / name).stat().st_size > 5000
    assert os.environ["SKY_DISTILL_RUN_DIR"] == str(run_dir)
