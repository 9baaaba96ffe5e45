"""The verify notebook runs end to end on a real verify run and saves its plots."""

import pytest

from tests.conftest import REPO, execute_notebook

NOTEBOOK = REPO / "notebooks" / "verify_report.ipynb"

pytestmark = pytest.mark.slow


def test_verify_report_notebook_executes(verify_run, tmp_path, monkeypatch):
    run_dir, generated, report = verify_run
    figures = tmp_path / "figures"
    outputs = execute_notebook(NOTEBOOK, run_dir, figures, monkeypatch)
    problems = len({trace.problem_id for trace in generated["traces"]})
    assert f"{len(generated['traces'])} traces of {problems} problems" in outputs
    assert f"kept {report['verify/kept']}" in outputs
    assert "decontaminated problems by benchmark" in outputs and "problem broken-gold" in outputs
    for name in ("acceptance_by_source.png", "trace_lengths.png", "truncation.png"):
        assert (figures / name).stat().st_size > 5000, name
    from tests.evaluate.test_notebook import inline_figures

    assert inline_figures(tmp_path / NOTEBOOK.name) == 3  # shown inline, not only saved
