"""Logging set-up shared by every entry point; under DeepSpeed only rank 0 logs at INFO."""

from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(rank: int | None = None, level: int = logging.INFO) -> None:
    """Configure the root logger once; ranks other than 0 log warnings and errors only."""
    if rank is None:
        rank = int(os.environ.get("RANK", "0"))
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format=FORMAT, level=level)
    root.setLevel(level if rank == 0 else logging.WARNING)
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "math_verify"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
