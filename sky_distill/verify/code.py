"""Code answers: extract the solution, run it against the problem's tests in the sandbox.

The test contract (`Problem.tests` for `answer_type == "code"`), shared with the eval harness:

    {"type": "functional", "code": "<asserts and/or def check(candidate)>", "entry_point": "<name or null>"}
        the solution, then `code`, then `check(<entry_point>)` when `code` defines `check`;
        one program: it passes when it runs to its end.
    {"type": "stdio", "cases": [{"input": "...", "output": "..."}, ...]}
        the solution once per case with the input on stdin; the output must match (tokens,
        whitespace and trailing newlines ignored, numbers within `float_tolerance`).

Optional keys (both types): `timeout_s` (per test: the functional program, or one stdio case),
`memory_mb`, `prelude` (code run before a functional solution; default `FUNCTIONAL_PRELUDE`,
`""` for none). A problem's total time is capped by the check's timeout (`problem_timeout_s`).
A string `tests` is read as JSON. Malformed tests are reported (`MalformedTestsError`), never run.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

from sky_distill.config import SandboxConfig
from sky_distill.verify.checks import outcome
from sky_distill.verify.math import answer_region
from sky_distill.verify.sandbox import SandboxResult, run_python

# Names LeetCode-style solutions use without importing them (as the LeetCode judge provides).
FUNCTIONAL_PRELUDE = """\
from typing import *
from collections import *
from heapq import *
from bisect import *
from itertools import *
from functools import *
import math, re, string, collections, heapq, bisect, itertools, functools, operator
from math import inf, gcd, sqrt, ceil, floor, comb, log, log2
"""

_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```", re.DOTALL)


_settings = SandboxConfig()


def configure(settings: SandboxConfig | None) -> None:
    """Set this process's sandbox settings (`verify.sandbox`; the verify pool calls it in each worker)."""
    global _settings
    _settings = settings or SandboxConfig()


class MalformedTestsError(ValueError):
    """A problem's tests do not follow the contract; the message names the field."""


# --- the solution -----------------------------------------------------------------------------


def extract_code(response: str) -> str | None:
    """The last ```python (or plain ```) block of the answer region, else the whole region if it is code."""
    region = answer_region(response)
    blocks = [(language.lower(), body) for language, body in _FENCE.findall(region)]
    python = [body for language, body in blocks if language in ("python", "py", "python3", "")]
    if python:
        return python[-1].strip("\n") + "\n"
    if blocks:
        return None  # code, but in another language
    text = region.strip()
    if not text:
        return None
    try:
        compile(text, "<answer>", "exec")
    except (SyntaxError, ValueError):
        return None
    return text + "\n"


def code_fingerprint(code: str) -> str:
    return "code:" + hashlib.sha256(code.encode()).hexdigest()[:12]


# --- the tests --------------------------------------------------------------------------------


def parse_tests(tests: Any) -> dict[str, Any]:
    """Validated tests (a dict following the contract) or `MalformedTestsError` naming what is wrong."""
    if tests is None:
        raise MalformedTestsError("tests: missing (a code problem needs tests)")
    if isinstance(tests, str):
        try:
            tests = json.loads(tests)
        except json.JSONDecodeError as error:
            raise MalformedTestsError(f"tests: not valid JSON ({error.msg} at column {error.colno})") from error
    if not isinstance(tests, dict):
        raise MalformedTestsError(f"tests: expected an object, got {type(tests).__name__}")
    kind = tests.get("type")
    if kind == "functional":
        if not isinstance(tests.get("code"), str) or not tests["code"].strip():
            raise MalformedTestsError("tests.code: missing or empty")
        entry = tests.get("entry_point")
        if entry is not None and (not isinstance(entry, str) or not entry.isidentifier()):
            raise MalformedTestsError(f"tests.entry_point: not a function name: {entry!r}")
    elif kind == "stdio":
        cases = tests.get("cases")
        if isinstance(cases, str):
            try:
                cases = json.loads(cases)
            except json.JSONDecodeError as error:
                raise MalformedTestsError(
                    f"tests.cases: not valid JSON ({error.msg} at column {error.colno})"
                ) from error
        if not isinstance(cases, list) or not cases:
            raise MalformedTestsError("tests.cases: missing or empty")
        for index, case in enumerate(cases):
            if not isinstance(case, dict):
                raise MalformedTestsError(f"tests.cases[{index}]: expected an object, got {type(case).__name__}")
            for key in ("input", "output"):
                if not isinstance(case.get(key), str):
                    raise MalformedTestsError(f"tests.cases[{index}].{key}: missing or not a string")
        tests = {**tests, "cases": cases}
    else:
        raise MalformedTestsError(f"tests.type: expected 'functional' or 'stdio', got {kind!r}")
    for key in ("timeout_s", "memory_mb"):
        value = tests.get(key)
        if value is not None and (not isinstance(value, (int, float)) or value <= 0):
            raise MalformedTestsError(f"tests.{key}: expected a positive number, got {value!r}")
    return tests


def functional_program(solution: str, tests: dict[str, Any]) -> str:
    """The solution, the test code, and the `check(entry_point)` call when there is one."""
    prelude = tests.get("prelude")
    parts = [FUNCTIONAL_PRELUDE if prelude is None else prelude, solution, tests["code"]]
    entry = tests.get("entry_point")
    if entry and re.search(r"^def check\s*\(", tests["code"], re.MULTILINE):
        parts.append(f"check({entry})")
    return "\n\n".join(part.rstrip() for part in parts if part.strip()) + "\n"


# --- comparing outputs ------------------------------------------------------------------------


def _number(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def outputs_match(got: str, expected: str, float_tolerance: float = 1e-6) -> bool:
    """Tokens equal (whitespace and line breaks ignored); numbers within a relative or absolute tolerance."""
    if got == expected or got.strip() == expected.strip():
        return True
    got_tokens, expected_tokens = got.split(), expected.split()
    if len(got_tokens) != len(expected_tokens):
        return False
    for mine, theirs in zip(got_tokens, expected_tokens):
        if mine == theirs:
            continue
        a, b = _number(mine), _number(theirs)
        if a is None or b is None or "." not in mine + theirs and "e" not in (mine + theirs).lower():
            return False  # integers and words must match exactly
        if abs(a - b) > float_tolerance * max(1.0, abs(b)):
            return False
    return True


def _shorten(text: str, limit: int = 120) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


# --- running ----------------------------------------------------------------------------------


def _failure(result: SandboxResult, where: str) -> tuple[str, str]:
    """Verdict status and detail for a program that did not pass."""
    if result.status == "timeout":
        return "timeout", f"{where}: time limit ({result.detail})"
    if result.status == "sandbox_error":
        return "error", f"{where}: sandbox error: {result.detail}"
    return "incorrect", f"{where}: {result.status}: {result.detail or ''}".rstrip(": ")


def run_functional(
    solution: str, tests: dict[str, Any], budget_s: float, settings: SandboxConfig
) -> tuple[str, str | None]:
    timeout = min(tests.get("timeout_s") or max(settings.test_timeout_s, budget_s), budget_s)
    result = run_python(
        functional_program(solution, tests),
        timeout_s=timeout,
        memory_mb=tests.get("memory_mb") or settings.memory_mb,
        limits=settings.limits(timeout),
        backend=settings.backend,
        site_packages=settings.site_packages,
    )
    if result.status == "ok" and result.completed:
        return "correct", None
    if result.status == "ok":
        return "incorrect", "the program exited before its tests finished"
    return _failure(result, "tests")


def run_stdio(solution: str, tests: dict[str, Any], budget_s: float, settings: SandboxConfig) -> tuple[str, str | None]:
    cases = tests["cases"]
    deadline = time.monotonic() + budget_s
    per_test = tests.get("timeout_s") or settings.test_timeout_s
    failures: list[str] = []
    passed = 0
    for index, case in enumerate(cases):
        remaining = deadline - time.monotonic()
        if remaining <= 0.05:
            return "timeout", f"problem time cap ({budget_s:g}s) reached after {passed}/{len(cases)} cases"
        timeout = min(per_test, remaining)
        result = run_python(
            solution,
            stdin=case["input"],
            timeout_s=timeout,
            memory_mb=tests.get("memory_mb") or settings.memory_mb,
            limits=settings.limits(timeout),
            backend=settings.backend,
            site_packages=settings.site_packages,
        )
        where = f"case {index + 1}/{len(cases)}"
        if result.status == "timeout" and timeout < per_test:
            return "timeout", f"problem time cap ({budget_s:g}s) reached in {where} after {passed} passed"
        if result.status != "ok":
            status, detail = _failure(result, where)
            if status in ("timeout", "error") or settings.stop_at_first_failure:
                return status, detail
            failures.append(detail)
        elif not outputs_match(result.stdout, case["output"], settings.float_tolerance):
            detail = f"{where}: expected {_shorten(case['output'])}, got {_shorten(result.stdout)}"
            if settings.stop_at_first_failure:
                return "incorrect", detail
            failures.append(detail)
        else:
            passed += 1
    if failures:
        return "incorrect", f"passed {passed}/{len(cases)}; first failure: {failures[0]}"
    return "correct", None


def check_code(
    response: str, tests: Any, started: float | None = None, timeout_s: float | None = None
) -> dict[str, Any]:
    """Judge a code answer; `timeout_s` caps the whole problem (all its tests)."""
    started = time.perf_counter() if started is None else started
    try:
        parsed = parse_tests(tests)
    except MalformedTestsError as error:
        return outcome("error", None, str(error), started)
    solution = extract_code(response)
    if solution is None:
        return outcome("unparsed", None, "no Python code block in the answer", started)
    extracted = code_fingerprint(solution)
    budget = timeout_s if timeout_s is not None else 60.0
    runner = run_functional if parsed["type"] == "functional" else run_stdio
    status, detail = runner(solution, parsed, budget, _settings)
    return outcome(status, extracted, detail, started)
