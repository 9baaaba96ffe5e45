"""Logging set-up shared by every entry point; under DeepSpeed only rank 0 logs at INFO.

The console shows sky-distill's own INFO and everyone's warnings; other libraries' INFO (vLLM's
engine configuration, DeepSpeed's, transformers') goes only to the stage's log file, which
Hydra writes in `<run_dir>/logs/<stage>/...`. Progress bars redraw at most once a minute where
the output is not a terminal (a SLURM log, a pipe), instead of one line per update.
"""

from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
OWN = "sky_distill"
NONTERMINAL_PROGRESS_INTERVAL_S = "60"


class ConsoleFilter(logging.Filter):
    """Passes this package's records at any level, and other loggers' warnings and errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == OWN or record.name.startswith(OWN + ".") or record.name in ("__main__", "root")
        return own or record.levelno >= logging.WARNING


def is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)


def quiet_libraries(environ: dict[str, str] | os._Environ = os.environ, terminal: bool | None = None) -> None:
    """Environment for libraries configured by variables (inherited by their worker processes)."""
    environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")  # vLLM's loggers propagate here instead of printing
    if terminal is None:
        terminal = sys.stderr.isatty()
    if not terminal:
        environ.setdefault("TQDM_MININTERVAL", NONTERMINAL_PROGRESS_INTERVAL_S)


def setup_logging(rank: int | None = None, level: int = logging.INFO) -> None:
    """Configure the root logger once; ranks other than 0 log warnings and errors only."""
    if rank is None:
        rank = int(os.environ.get("RANK", "0"))
    quiet_libraries()
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format=FORMAT, level=level)
    root.setLevel(level if rank == 0 else logging.WARNING)
    for handler in root.handlers:
        if is_console(handler) and not any(isinstance(f, ConsoleFilter) for f in handler.filters):
            handler.addFilter(ConsoleFilter())
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "math_verify"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
