"""Hand-labelled sets that measure the math verifier: answer pairs and whole long responses.

Pairs (`tests/verify/data/equivalence_{dev,held_out}.jsonl`): `gold`, `pred`, `label`, `kind`,
`source`. Responses (`tests/verify/data/responses_held_out.jsonl`) name a real long trace in
`../shared/fixtures/sky_t1_traces_sample.jsonl` by `trace_id` rather than copying it; a row may
replace the trace's final answer (`final_answer`, a wrong value for a near-miss) and restate it
as a sentence instead of a box (`final_form: "stated"`), so earlier boxed values become distractors.
Held-out v2's, v3's and v4's responses (`responses_held_out_v{2,3,4}.jsonl`) name a row of SkyThought's
published evaluation outputs; `scripts/heldout_texts.py` writes their texts to `HELD_OUT_TEXTS` (not in git).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

PAIR_FIELDS = {"gold": str, "pred": str, "label": bool, "kind": str, "source": str}
RESPONSE_FIELDS = {"trace_id": str, "problem_id": str, "benchmark": str, "label": bool, "source": str}
HELD_OUT_TEXTS = {
    split: f"shared/verifier/responses_held_out_{split}.jsonl" for split in ("v2", "v3", "v4")
}  # from the root
V2_TEXTS = HELD_OUT_TEXTS["v2"]
EXCERPT_BEFORE_THOUGHT_END = 2000
EXCERPT_TAIL = 6000
INLINE_RESPONSE_FIELDS = {"problem_id": str, "benchmark": str, "response": str, "label": bool, "source": str}


@dataclass(frozen=True)
class Response:
    """A long response with its gold answer and hand-checked label."""

    problem_id: str
    benchmark: str
    response: str
    gold: str
    label: bool
    kind: str


def read_rows(path: Path, fields: dict[str, type]) -> list[dict]:
    """JSONL rows with the required typed fields; an error names the file, line and field."""
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not JSON ({error})") from error
        for field, kind in fields.items():
            if not isinstance(row.get(field), kind):
                raise ValueError(f"{path}:{number}: field {field!r} must be {kind.__name__}, got {row.get(field)!r}")
        rows.append(row)
    return rows


def read_pairs(path: Path) -> list[dict]:
    return read_rows(path, PAIR_FIELDS)


def _last_boxed_span(text: str) -> tuple[int, int] | None:
    """Start and end of the braces' content of the last `\\boxed{...}`."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed")
    for index in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return begin + 1, index
    return None


def edit_final_answer(trace: str, final_answer: str | None, final_form: str) -> str:
    """The trace with its last boxed answer replaced and/or restated as 'The final answer is ...'."""
    span = _last_boxed_span(trace)
    if span is None:
        raise ValueError("the trace has no \\boxed{} answer to edit")
    begin, end = span
    answer = trace[begin:end] if final_answer is None else final_answer
    if final_form == "boxed":
        return trace[:begin] + answer + trace[end:]
    if final_form != "stated":
        raise ValueError(f"final_form must be 'boxed' or 'stated', got {final_form!r}")
    edited = trace[: begin - len("\\boxed{")] + answer + trace[end + 1 :]
    closing = re.search(r"<\|end_of_solution\|>\s*$", edited)
    statement = f"\n\nThe final answer is ${answer}$."
    return edited[: closing.start()] + statement + edited[closing.start() :] if closing else edited + statement


def _golds(rows: list[dict], benchmarks_dir: Path) -> dict[str, str]:
    golds: dict[str, str] = {}
    for benchmark in sorted({row["benchmark"] for row in rows}):
        for gold in read_rows(Path(benchmarks_dir) / f"{benchmark}.jsonl", {"id": str}):
            golds[gold["id"]] = str(gold["answer"])
    return golds


def response_excerpt(text: str) -> str:
    """The part of a long response the labels were set on: from 2,000 characters before the end of
    its thinking, or, without a thinking end marker, its last 6,000 characters."""
    end = text.find("<|end_of_thought|>")
    if end >= 0:
        return text[max(0, end - EXCERPT_BEFORE_THOUGHT_END) :]
    return text[-EXCERPT_TAIL:]


def read_inline_responses(path: Path, benchmarks_dir: Path) -> list[Response]:
    """Responses stored in the file itself (`response`), gold joined from the benchmark files; kind = benchmark."""
    rows = read_rows(path, INLINE_RESPONSE_FIELDS)
    golds = _golds(rows, benchmarks_dir)
    responses = []
    for number, row in enumerate(rows, start=1):
        if row["problem_id"] not in golds:
            raise ValueError(f"{path}:{number}: field 'problem_id' {row['problem_id']!r} has no gold")
        gold = golds[row["problem_id"]]
        responses.append(
            Response(row["problem_id"], row["benchmark"], row["response"], gold, row["label"], row["benchmark"])
        )
    return responses


def read_responses(path: Path, traces_path: Path, benchmarks_dir: Path) -> list[Response]:
    """Responses built from the shared traces, with the gold joined from the benchmark files."""
    rows = read_rows(path, RESPONSE_FIELDS)
    traces = {row["id"]: row for row in read_rows(traces_path, {"id": str, "trace": str})}
    golds = _golds(rows, benchmarks_dir)
    responses = []
    for number, row in enumerate(rows, start=1):
        if row["trace_id"] not in traces:
            raise ValueError(f"{path}:{number}: field 'trace_id' {row['trace_id']!r} is not in {traces_path}")
        if row["problem_id"] not in golds:
            raise ValueError(f"{path}:{number}: field 'problem_id' {row['problem_id']!r} has no gold")
        text = traces[row["trace_id"]]["trace"]
        final_form = row.get("final_form", "boxed")
        if row.get("final_answer") is not None or final_form != "boxed":
            try:
                text = edit_final_answer(text, row.get("final_answer"), final_form)
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}") from error
        kind = ("near_miss" if row.get("final_answer") is not None else "as_written") + f"/{final_form}"
        responses.append(
            Response(row["problem_id"], row["benchmark"], text, golds[row["problem_id"]], row["label"], kind)
        )
    return responses


_NUMBER_TOKEN = re.compile(r"\d+(?:\.\d+)?")
_WRAPPED_TEXT = re.compile(r"\\(?:text|mathrm|textbf|operatorname|mbox)\s*\{[^{}]*\}")


def _in_exponent_or_subscript(text: str, start: int) -> bool:
    """Whether a number starting at `start` is an exponent, a subscript or a scientific exponent."""
    before = text[:start].rstrip(" {(-+")
    return before.endswith(("^", "_", "e", "E")) and not before.endswith("\\cdote")


def near_misses(gold: str) -> list[str]:
    """Wrong answers one step from the gold: one digit of one number changed, or the sign flipped.

    Exponents, subscripts (names like `C_1`, bases like `4210_5`) and digits in text are left alone,
    so every variant keeps the gold's magnitude and form.
    """
    masked = _WRAPPED_TEXT.sub(lambda match: "#" * len(match.group(0)), gold)
    variants = []
    for match in _NUMBER_TOKEN.finditer(masked):
        if _in_exponent_or_subscript(masked, match.start()) or (
            match.group(0) == "10" and masked[match.end() :].lstrip().startswith("^")
        ):
            continue  # the base of `10^{n}` sets the magnitude
        number = match.group(0)
        last = number[-1]
        changed = number[:-1] + str((int(last) + 1) % 10)
        if len(number) > 1 and number[0] != "0" and changed[0] == "0":
            continue
        variants.append(gold[: match.start()] + changed + gold[match.end() :])
    single = re.fullmatch(r"\s*(-?)(\d+(?:\.\d+)?)\s*", gold)
    if single and float(single.group(2)) != 0:
        variants.append(single.group(2) if single.group(1) else f"-{single.group(2)}")
    return list(dict.fromkeys(variant for variant in variants if variant != gold))


DRESSINGS = ("{} \\text{{ cm}}", "\\approx {}", "x = {}", "{}\\,\\mathrm{{K}}", "{} nm")


def dress(answer: str) -> list[str]:
    """An answer with a unit, a qualifier or a name around it (`x = 3`), as models write them."""
    return [dressing.format(answer) for dressing in DRESSINGS]
