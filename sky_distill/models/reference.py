"""Telling a Hub model id from a local path, and failing early when a local model is missing."""

from __future__ import annotations

import re
from pathlib import Path

from sky_distill.errors import MissingInputError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(reference: str) -> bool:
    return bool(HUB_ID.match(reference)) and not Path(reference).exists()


def check_model_reference(reference: str, role: str, hint: str = "") -> None:
    """Raise a one-line error if `reference` is neither an existing directory nor a Hub id."""
    if Path(reference).is_dir() or is_hub_id(reference):
        return
    advice = f"; {hint}" if hint else ""
    raise MissingInputError(f"{role} model {reference!r} is not a directory and not a Hub id (org/name){advice}")
