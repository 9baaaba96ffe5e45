"""The comparison notebook runs end to end on real eval results and saves its plots."""

import os

from tests.conftest import REPO, execute_notebook

NOTEBOOK = REPO / "notebooks" / "compare_evals.ipynb"


def test_compare_evals_notebook_executes(dev_run, tmp_path, monkeypatch):
    run_dir, _, _ = dev_run
    figures = tmp_path / "figures"
    outputs = execute_notebook(NOTEBOOK, run_dir, figures, monkeypatch)
    assert "2 models, 5 benchmarks, 400 samples" in outputs
    for name in ("accuracy_per_benchmark.png", "accuracy_vs_length.png"):
        assert (figures / name).stat().st_size > 5000
    assert os.environ["SKY_DISTILL_RUN_DIR"] == str(run_dir)
    assert inline_figures(tmp_path / NOTEBOOK.name) == 2  # seen: none shown under the Agg backend


def inline_figures(executed) -> int:
    """The figures a user sees in the executed notebook (PNG outputs), not only the saved files."""
    import json

    cells = json.loads(executed.read_text())["cells"]
    return sum("image/png" in output.get("data", {}) for cell in cells for output in cell.get("outputs", []))
