"""Multiple-choice answers (GPQA style): the letter a response settles on, never a stray article "a".

A letter counts only where it is marked as an option: boxed (`\\boxed{C}`, `\\boxed{\\text{(C)}}`),
after "answer is" / "answer:" / "correct option is" as a capital or in parentheses, "(C) is
correct", or alone on the last line. A lower-case letter counts only in a box or in parentheses:
"the answer is a bit tricky" is not A.
"""

from __future__ import annotations

import re

from sky_distill.verify.math import answer_region, last_boxed

LETTERS = "ABCDEFGHIJ"

_MARKUP = re.compile(r"[*_`]|\\textbf\{|\\text\{|\\mathrm\{|\\mathbf\{")
# A bare capital counts unless it reads as a word: "A careful look...", "I think...".
_OPTION = r"(?:\(([A-Ja-j])\)|\[([A-Ja-j])\]|\b(?![AI]\s+[a-z]{2,})([A-J])\b(?![.']\w|-\w))"
_STATEMENTS = [
    re.compile(
        r"(?:answer|choice|option)\s*(?:is|would be|should be|must be|=)?\s*(?:option|choice|letter)?\s*[:\-]?\s*\$?\s*"
        + _OPTION,
        re.IGNORECASE,
    ),
    re.compile(r"(?:correct|right|best)\s+(?:answer|option|choice)\s+is\s*:?\s*" + _OPTION, re.IGNORECASE),
    re.compile(r"(?:I\s+(?:choose|pick|select)|select(?:ing)?|choose|go with)\s+(?:option\s+)?" + _OPTION),
    re.compile(_OPTION + r"\s+is\s+(?:the\s+)?(?:correct|right|answer)", re.IGNORECASE),
]
_LONE_LINE = re.compile(r"^\s*(?:\(([A-Ja-j])\)|([A-J]))\s*[.)]?\s*$", re.MULTILINE)


def _letter(groups: tuple[str | None, ...], options: str) -> str | None:
    """The option letter of a match: parenthesised letters may be lower case, bare ones must be capitals."""
    parenthesised = [group for group in groups[:2] if group]
    bare = [group for group in groups[2:] if group]
    for letter in parenthesised:
        if letter.upper() in options:
            return letter.upper()
    for letter in bare:
        if letter.isupper() and letter in options:
            return letter
    return None


def _boxed_letter(text: str, options: str) -> str | None:
    boxed = last_boxed(text)
    if boxed is None:
        return None
    inner = _MARKUP.sub("", boxed).replace("}", "").strip().strip("$").strip()
    match = re.fullmatch(r"\(?([A-Ja-j])\)?(?:[.:)]\s*.*)?", inner, re.DOTALL)
    if match and match.group(1).upper() in options:
        return match.group(1).upper()
    return None


def extract_choice(response: str, num_choices: int | None = None) -> str | None:
    """The letter a response settles on: boxed, then a stated answer, then a lone letter on a line."""
    options = LETTERS[: num_choices or len(LETTERS)]
    region = answer_region(response)
    for text in (region, response) if region is not response else (response,):
        letter = _boxed_letter(text, options)
        if letter:
            return letter
    plain = _MARKUP.sub("", region).replace("}", "")
    for pattern in _STATEMENTS:
        letters = [_letter(match.groups(), options) for match in pattern.finditer(plain)]
        letters = [letter for letter in letters if letter]
        if letters:
            return letters[-1]
    lines = [line for line in plain.strip().splitlines() if line.strip()]
    if lines:
        lone = _LONE_LINE.fullmatch(lines[-1])
        if lone:
            return _letter((lone.group(1), None, lone.group(2)), options)
    return None


def is_correct_choice(response: str, gold: str, num_choices: int | None = None) -> bool:
    letter = extract_choice(response, num_choices)
    return letter is not None and letter == gold.strip().strip("()").upper()
