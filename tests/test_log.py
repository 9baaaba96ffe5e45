"""The console stays readable: other libraries' INFO goes to the log file only, progress bars do
not redraw per update outside a terminal, and a pipeline prints one table, labelled avg@<n>."""

import io
import logging
import os

from sky_distill.log import quiet_libraries, setup_logging


def test_third_party_info_goes_to_the_log_file_not_the_console(tmp_path, monkeypatch):
    """Seen: vLLM's engine configuration dumps at INFO among ~1,100 console lines of `make demo`."""
    for name in ("VLLM_CONFIGURE_LOGGING", "TQDM_MININTERVAL"):
        monkeypatch.delenv(name, raising=False)  # restored after the test
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    console, log_file = io.StringIO(), tmp_path / "eval.log"
    root.handlers = [logging.StreamHandler(console), logging.FileHandler(log_file)]
    try:
        setup_logging(rank=0)
        setup_logging(rank=0)  # idempotent: one filter per handler
        logging.getLogger("vllm.config").info("Initializing a V1 LLM engine with config: ...")
        logging.getLogger("sky_distill.evaluate.stage").info("student on arithmetic: avg@4 0.5")
        logging.getLogger("vllm.worker").warning("KV cache is small")
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers, root.level = saved
    shown, kept = console.getvalue(), log_file.read_text()
    assert "avg@4 0.5" in shown and "KV cache is small" in shown
    assert "Initializing a V1 LLM engine" not in shown and "Initializing a V1 LLM engine" in kept
    assert os.environ.get("VLLM_CONFIGURE_LOGGING") == "0"  # vLLM's loggers propagate to these handlers


def test_progress_bars_outside_a_terminal_print_a_few_lines_not_one_per_update(monkeypatch):
    """Seen: progress bars redrawn as lines in a non-terminal."""
    from tqdm import tqdm

    environ: dict[str, str] = {}
    quiet_libraries(environ, terminal=False)
    assert environ["TQDM_MININTERVAL"] == "60"
    monkeypatch.setenv("TQDM_MININTERVAL", environ["TQDM_MININTERVAL"])
    out = io.StringIO()
    for _ in tqdm(range(5000), file=out, miniters=1):
        pass
    assert out.getvalue().count("\r") <= 3  # start, end (and at most one redraw)
    quiet_libraries(terminal_env := {}, terminal=True)
    assert "TQDM_MININTERVAL" not in terminal_env


def test_a_pipeline_step_prints_one_line_and_the_seed_table_names_its_sample_count(monkeypatch, capsys):
    """Seen: the final table printed twice, labelled avg@n instead of avg@4."""
    from sky_distill.cli import NESTED_ENV, print_summary
    from sky_distill.evaluate.seed_table import seed_markdown

    monkeypatch.setenv(NESTED_ENV, "1")
    print_summary("table", {"table": "| model | ... |"})
    assert capsys.readouterr().out == "sky-distill table: done\n"
    stats = {"mean": 0.5, "seed_sd": 0.1, "ci_low": 0.4, "ci_high": 0.6, "seed_means": [0.5]}
    block = {"problems": 200, "samples": [4], "models": {"student": stats}, "differences": {}}
    results = {"seeds": 3, "confidence": 0.95, "resamples": 1000, "benchmarks": {"arithmetic": block}}
    assert seed_markdown(results).startswith("**arithmetic**: avg@4 (%) over 3 seeds x 200 problems")
