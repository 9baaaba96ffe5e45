"""One check for every answer type, shared by curation (verify) and scoring (eval).

`check_response` runs inside a worker process (see pool.py); it returns plain data.
"""

from __future__ import annotations

import time
from typing import Any

from sky_distill.verify import choice
from sky_distill.verify import math as math_check

VERIFIER_VERSION = f"math-{math_check.VERIFIER_VERSION}"


def check_response(answer_type: str, response: str, gold: str, tests: Any = None) -> dict[str, Any]:
    """Judge one response: status is correct, incorrect, unparsed or error."""
    started = time.perf_counter()
    if answer_type == "math":
        extracted = math_check.extract_answer(response)
        correct = extracted is not None and math_check.equivalent(extracted, gold)
    elif answer_type == "choice":
        extracted = choice.extract_choice(response)
        correct = extracted is not None and extracted == gold.strip().upper()
    elif answer_type == "code":
        from sky_distill.verify.code import check_code

        return check_code(response, tests, started)
    else:
        return {
            "status": "error",
            "correct": False,
            "extracted": None,
            "detail": f"unknown answer_type {answer_type!r}",
        }
    status = "unparsed" if extracted is None else ("correct" if correct else "incorrect")
    return {
        "status": status,
        "correct": correct,
        "extracted": extracted,
        "detail": None,
        "elapsed_s": round(time.perf_counter() - started, 4),
    }
