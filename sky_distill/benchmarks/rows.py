"""Benchmark rows become `Problem`s: field mapping, gold answers, choices, code tests, prompts. Pure.

Rows are first put in a canonical shape by the source's `fields` (record field -> column, or a
`"{column}"` template), then the benchmark's builder makes the problem. Code problems carry the
verifier's test contract in `Problem.tests`:

    {"type": "functional", "code": "<asserts and/or def check(candidate)>", "entry_point": "<name or null>"}
    {"type": "stdio", "cases": [{"input": "...", "output": "..."}]}
"""

from __future__ import annotations

import ast
import base64
import datetime as dt
import hashlib
import io
import json
import pickle
import random
import re
import string
import zlib
from typing import Any

from sky_distill.benchmarks.registry import BenchmarkSpec
from sky_distill.errors import SkyDistillError
from sky_distill.records import Problem, RecordError
from sky_distill.runs import fingerprint_object
from sky_distill.verify.math import last_boxed

LETTERS = string.ascii_uppercase


class RowError(ValueError):
    """A row that cannot become a problem; `field` names the column at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


# --- field mapping -------------------------------------------------------------------------


def canonical_row(row: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """The row with each mapped record field set from its column (or template) as well."""
    out = dict(row)
    for target, column in fields.items():
        if "{" in column:
            try:
                out[target] = column.format_map(row)
            except (KeyError, IndexError) as error:
                raise RowError(str(error).strip("'"), f"missing field (used by {target!r} template)") from error
        elif column in row:
            out[target] = row[column]
        else:
            raise RowError(column, f"missing field (mapped to {target!r})")
    return out


def require(row: dict[str, Any], *names: str) -> None:
    for name in names:
        value = row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise RowError(name, "missing or empty field")


def gold_answer(row: dict[str, Any], answer_from: str) -> str:
    """The gold final answer, taken as the source stores it."""
    if answer_from == "answer":
        require(row, "answer")
        return normalize_gold(row["answer"])
    if answer_from == "solution_hashes":  # GSM8K: "... #### 1,234"
        require(row, "solution")
        text = str(row["solution"])
        if "####" not in text:
            raise RowError("solution", "no '####' final answer in the solution")
        return text.rsplit("####", 1)[1].strip().replace(",", "")
    if answer_from == "solution_boxed":
        require(row, "solution")
        boxed = last_boxed(str(row["solution"]))
        if boxed is None:
            raise RowError("solution", "no \\boxed{} answer in the solution")
        return boxed
    if answer_from == "first_of_list":  # OlympiadBench: final_answer = ["$2$"]
        require(row, "answer")
        value = row["answer"]
        if isinstance(value, str):
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                value = [value]
        if not isinstance(value, list) or not value:
            raise RowError("answer", "expected a non-empty list of final answers")
        return ", ".join(str(item).strip().strip("$").strip() for item in value)
    raise RowError("answer", f"unknown answer_from {answer_from!r}")


def normalize_gold(value: Any) -> str:
    """Gold as text; whole floats (AMC's 27.0) become integers."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    if re.fullmatch(r"-?\d+\.0+", text):
        return text.split(".")[0]
    return text


# --- dates ---------------------------------------------------------------------------------


def row_date(value: Any) -> dt.date:
    """A problem's date from ISO text (2023-08-21T00:00:00) or epoch seconds (1705804200)."""
    text = str(value).strip()
    if re.fullmatch(r"\d{9,11}(\.\d+)?", text):
        return dt.datetime.fromtimestamp(float(text), tz=dt.timezone.utc).date()
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError as error:
        raise RowError("date", f"not a date: {text!r}") from error


def parse_day(text: str, key: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(text))
    except ValueError as error:
        raise SkyDistillError(f"{key}: expected a date YYYY-MM-DD, got {text!r}") from error


def in_window(day: dt.date, date_from: dt.date | None, date_to: dt.date | None) -> bool:
    """Whether a day lies in [date_from, date_to], both ends included."""
    return (date_from is None or day >= date_from) and (date_to is None or day <= date_to)


# --- builders ------------------------------------------------------------------------------


def shuffled_choices(problem_id: str, correct: str, incorrect: list[str], seed: int = 0) -> tuple[list[str], str]:
    """Options in an order fixed by the problem id and seed, and the letter of the correct one."""
    options = [correct, *incorrect]
    digest = hashlib.blake2b(f"{seed}/{problem_id}".encode(), digest_size=8).digest()
    random.Random(int.from_bytes(digest, "big")).shuffle(options)
    return options, LETTERS[options.index(correct)]


def format_choices(choices: list[str]) -> str:
    return "\n".join(f"{LETTERS[index]}) {choice}" for index, choice in enumerate(choices))


def as_list(value: Any, field: str) -> list[str]:
    """A list column that may arrive as a list, a JSON string or a Python repr."""
    if isinstance(value, list):
        return [str(item) for item in value]
    if isinstance(value, str):
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(value)
            except (ValueError, SyntaxError):
                continue
            if isinstance(parsed, list):
                return [str(item) for item in parsed]
    raise RowError(field, "expected a list")


class _NoGlobals(pickle.Unpickler):
    """Unpickles plain data only: LiveCodeBench's test cases are a pickled JSON string."""

    def find_class(self, module: str, name: str):  # noqa: ARG002
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from benchmark data")


def decode_private_cases(encoded: str) -> list[dict[str, Any]]:
    """LiveCodeBench's `private_test_cases`: base64 of zlib of a pickled JSON string (or plain JSON)."""
    if not encoded:
        return []
    text = encoded.strip()
    if text.startswith("["):
        return json.loads(text)
    raw = _NoGlobals(io.BytesIO(zlib.decompress(base64.b64decode(text)))).load()
    return json.loads(raw) if isinstance(raw, (str, bytes)) else list(raw)


def functional_tests_from_cases(func_name: str, cases: list[dict[str, Any]]) -> str:
    """Assert code for LeetCode-style cases: each input line is one JSON argument."""
    pairs = [(str(case["input"]), str(case["output"])) for case in cases]
    return (
        "import json\n"
        f"_cases = {pairs!r}\n"
        "for _input, _output in _cases:\n"
        "    _args = [json.loads(_line) for _line in _input.split('\\n') if _line.strip()]\n"
        f"    _got = Solution().{func_name}(*_args)\n"
        "    assert _got == json.loads(_output), (_input, _got, _output)\n"
    )


LCB_STDIO = "Read the inputs from stdin, solve the problem and write the answer to stdout (do not directly test on the sample inputs)."
LCB_STARTER = "Use the following starter code and complete it:\n```python\n{starter}\n```"


def build_problem(row: dict[str, Any], spec: BenchmarkSpec, answer_from: str, prompt_template: str) -> Problem:
    """The `Problem` of one canonical row; raises `RowError` naming the field at fault."""
    require(row, "id", "problem")
    problem_id = str(row["id"])
    variables: dict[str, Any] = {"problem": str(row["problem"]).strip()}
    answer, choices, tests = "", None, None
    builder = spec.builder
    if builder == "plain":
        answer = gold_answer(row, answer_from)
    elif builder == "multiple_choice":
        require(row, "correct", "incorrect_1", "incorrect_2", "incorrect_3")
        incorrect = [str(row[f"incorrect_{i}"]).strip() for i in (1, 2, 3)]
        choices, answer = shuffled_choices(problem_id, str(row["correct"]).strip(), incorrect)
        variables["choices"] = format_choices(choices)
    elif builder == "humaneval":
        require(row, "test", "entry_point")
        tests = {"type": "functional", "code": str(row["test"]), "entry_point": str(row["entry_point"])}
    elif builder == "mbpp":
        require(row, "test_list")
        asserts = as_list(row["test_list"], "test_list")
        setup = str(row.get("test_setup") or "").strip()
        tests = {"type": "functional", "code": "\n".join([setup, *asserts]).strip() + "\n", "entry_point": None}
        variables["tests"] = "\n".join(asserts)
    elif builder == "leetcode":
        require(row, "test")
        tests = {"type": "functional", "code": str(row["test"]), "entry_point": None}
    elif builder == "livecodebench":
        tests, variables["code_instructions"] = livecodebench_tests(row)
    for name in ("problem", "choices", "tests", "code_instructions"):
        variables.setdefault(name, "")
    try:
        prompt = prompt_template.format_map({**row, **variables})
    except (KeyError, IndexError) as error:
        raise RowError(str(error).strip("'"), "the prompt template names a field this row lacks") from error
    metadata = {field: row[field] for field in spec.metadata_fields if field in row and row[field] is not None}
    return Problem(
        id=problem_id,
        problem=prompt,
        answer=answer,
        source=spec.name,
        answer_type=spec.answer_type,
        choices=choices,
        tests=tests,
        metadata=metadata,
    )


def livecodebench_tests(row: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """LiveCodeBench public + private cases as the verifier's contract, and the format instructions."""
    public = row.get("public_test_cases") or "[]"
    cases = json.loads(public) if isinstance(public, str) else list(public)
    try:
        cases += decode_private_cases(row.get("private_test_cases") or "")
    except Exception as error:  # corrupt data: name the field
        raise RowError("private_test_cases", f"cannot decode ({type(error).__name__}: {error})") from error
    if not cases:
        raise RowError("public_test_cases", "no test cases")
    meta = row.get("metadata") or "{}"
    meta = json.loads(meta) if isinstance(meta, str) else dict(meta)
    starter = str(row.get("starter_code") or "").strip()
    if cases[0].get("testtype") == "functional":
        if not meta.get("func_name"):
            raise RowError("metadata", "functional tests need metadata.func_name")
        code = functional_tests_from_cases(meta["func_name"], cases)
        return {"type": "functional", "code": code, "entry_point": None}, LCB_STARTER.format(starter=starter)
    stdio = [{"input": str(case["input"]), "output": str(case["output"])} for case in cases]
    instructions = LCB_STARTER.format(starter=starter) if starter else LCB_STDIO
    return {"type": "stdio", "cases": stdio}, instructions


def row_to_problem(
    row: dict[str, Any],
    spec: BenchmarkSpec,
    fields: dict[str, str],
    answer_from: str,
    prompt_template: str,
    where: tuple[str, int],
) -> Problem | RecordError:
    """A problem, or a `RecordError` naming the file, line and field."""
    path, line = where
    try:
        return build_problem(canonical_row(row, fields), spec, answer_from, prompt_template)
    except RowError as error:
        return RecordError(path, line, error.field, str(error))
    except ValueError as error:  # pydantic validation of the Problem
        return RecordError(path, line, "<record>", str(error).splitlines()[0])


def data_fingerprint(problems: list[Problem]) -> str:
    """A hash of what is scored: ids, gold answers, choices and tests (not the prompt wording)."""
    return fingerprint_object(
        [[p.id, p.answer, p.choices, p.tests, p.answer_type] for p in sorted(problems, key=lambda p: p.id)]
    )
