"""Multiple-choice answers (GPQA style): the chosen letter, never a stray article "a"."""

from __future__ import annotations

import re

from sky_distill.verify.math import answer_region, last_boxed

_PATTERNS = [
    re.compile(r"answer is\s*[:\-]?\s*\(?\**\s*([A-J])\b\)?", re.IGNORECASE),
    re.compile(r"answer\s*[:\-]\s*\(?\**\s*([A-J])\b\)?", re.IGNORECASE),
    re.compile(r"^\s*\(?([A-J])\)?\s*$", re.MULTILINE),
]


def extract_choice(response: str) -> str | None:
    """The letter a response settles on: boxed, then "the answer is (C)", then a lone letter line."""
    region = answer_region(response)
    boxed = last_boxed(region) or last_boxed(response)
    if boxed:
        letter = re.fullmatch(r"\s*(?:\\text\{)?\(?([A-Ja-j])\)?\}?\s*", boxed)
        if letter:
            return letter.group(1).upper()
    for pattern in _PATTERNS:
        found = pattern.findall(region)
        # "answer is a" in lower case is read as a letter only when written as a capital.
        capitals = [letter for letter in found if letter.isupper()]
        if capitals:
            return capitals[-1]
    return None


def is_correct_choice(response: str, gold: str) -> bool:
    letter = extract_choice(response)
    return letter is not None and letter == gold.strip().upper()
