"""One check for every answer type, shared by curation (verify) and scoring (eval).

`check_response` runs inside a worker process (see pool.py); it returns plain data:
status (correct, incorrect, unparsed, timeout, error), correct, extracted, detail, elapsed_s.
A gold answer that cannot be read, or malformed code tests, give status "error" with a detail
saying what is wrong (the stage adds the problem id and counts them).
"""

from __future__ import annotations

import time
from typing import Any

from sky_distill.config import SandboxConfig
from sky_distill.verify import choice
from sky_distill.verify import math as math_check

CODE_VERSION = "1"  # the sandbox runner: bump when a change can alter a code verdict
VERIFIER_VERSION = f"math-{math_check.VERIFIER_VERSION}+choice-2+code-{CODE_VERSION}"


def outcome(status: str, extracted: str | None, detail: str | None, started: float) -> dict[str, Any]:
    """What a check returns (plain data, pickled back from the worker), for every answer type."""
    return {
        "status": status,
        "correct": status == "correct",
        "extracted": extracted,
        "detail": detail,
        "elapsed_s": round(time.perf_counter() - started, 4),
    }


def gold_problem(answer_type: str, gold: str) -> str | None:
    """Why a math or choice gold answer cannot be used, or None."""
    if answer_type == "math":
        if not gold or not gold.strip():
            return "gold answer is empty"
        if math_check.is_text_answer(gold) or math_check.parses(gold):
            return None
        return f"gold answer cannot be parsed: {gold[:80]!r}"
    if answer_type == "choice":
        letter = gold.strip().strip("()").upper() if gold else ""
        if len(letter) != 1 or letter not in choice.LETTERS:
            return f"gold answer is not an option letter: {gold!r}"
    return None


def check_response(
    answer_type: str, response: str, gold: str, tests: Any = None, timeout_s: float | None = None
) -> dict[str, Any]:
    """Judge one response. `timeout_s` is the caller's limit for this check (code problems use it as their cap)."""
    started = time.perf_counter()
    if answer_type == "code":
        from sky_distill.verify.code import check_code  # code.py imports `outcome` from here

        return check_code(response, tests, started, timeout_s)
    if answer_type not in ("math", "choice"):
        return outcome("error", None, f"unknown answer_type {answer_type!r}", started)
    problem = gold_problem(answer_type, gold)
    if problem:
        return outcome("error", None, problem, started)
    if answer_type == "math":
        extracted = math_check.extract_answer(response)
        correct = extracted is not None and math_check.equivalent(extracted, gold)
    else:
        extracted = choice.extract_choice(response)
        correct = extracted is not None and extracted == gold.strip().strip("()").upper()
    status = "unparsed" if extracted is None else ("correct" if correct else "incorrect")
    return outcome(status, extracted, None, started)


def prepare_worker(code_settings: SandboxConfig | None = None) -> None:
    """A verify worker's start: its code settings, then one check to import and warm up the math
    verifier (math-verify, sympy). The pool starts timing an item only once the worker takes it,
    so these seconds never count against an item's timeout: on a loaded machine they used to,
    and every item of a stage could time out while its replacement workers were importing."""
    from sky_distill.verify.code import configure  # as above: code.py imports this module

    configure(code_settings)
    check_response("math", "\\boxed{\\frac{1}{2}}", "0.5")
