"""Math answer checking: find the final answer in a response, compare it to gold with math-verify.

Public API (RL reward code and notebooks call these):
    extract_answer(response) -> str | None
    equivalent(pred, gold) -> bool
    is_correct(response, gold) -> bool
"""

from __future__ import annotations

import re

VERIFIER_NAME = "sky_distill.verify.math"
VERIFIER_VERSION = "1"  # bump when a change can alter any verdict

_THINK_END = re.compile(r"</think>|<\|end_of_thought\|>")
_SOLUTION = re.compile(r"<\|begin_of_solution\|>(.*?)(?:<\|end_of_solution\|>|$)", re.DOTALL)
_FINAL_ANSWER = re.compile(r"final answer is[:\s]*\$?([^\n$]+?)\$?\s*(?:\.|$)", re.IGNORECASE | re.MULTILINE)


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`), braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0:
        return None
    depth = 0
    for position in range(brace, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : position].strip()
    return None


def answer_region(response: str) -> str:
    """The part of a long response that holds the final answer: the solution, not the thinking."""
    solution = _SOLUTION.search(response)
    if solution:
        return solution.group(1)
    parts = _THINK_END.split(response)
    return parts[-1] if len(parts) > 1 else response


def extract_answer(response: str) -> str | None:
    """The final answer of a response: last boxed answer after the thinking, else "final answer is ..."."""
    region = answer_region(response)
    boxed = last_boxed(region)
    if boxed is None and region is not response:
        boxed = last_boxed(response)
    if boxed is not None:
        return boxed
    stated = _FINAL_ANSWER.findall(region)
    return stated[-1].strip() if stated else None


def _parse(text: str):
    from math_verify import parse

    return parse(f"${text}$", parsing_timeout=None)


def equivalent(pred: str, gold: str) -> bool:
    """Whether two extracted answers are mathematically the same (math-verify, then exact text)."""
    from math_verify import verify

    if pred.strip() == gold.strip():
        return True
    gold_parsed, pred_parsed = _parse(gold), _parse(pred)
    if not gold_parsed or not pred_parsed:
        return _normalize_text(pred) == _normalize_text(gold)
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def is_correct(response: str, gold: str) -> bool:
    pred = extract_answer(response)
    return pred is not None and equivalent(pred, gold)


def _normalize_text(text: str) -> str:
    text = re.sub(r"\\text\{([^}]*)\}", r"\1", text)
    return re.sub(r"[\s.$]", "", text).lower()
