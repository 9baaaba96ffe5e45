"""Conversation layouts of public trace sets: detect a row's layout and turn it into samples. Pure.

Layouts (checked in this order, the first whose fields a row has wins):
    openr1_math      problem, generations (list) with correctness lists (OpenR1-Math-220k)
    s1k              question, thinking_trajectories (or cot), attempt (simplescaling/s1K)
    sharegpt         conversations [{from, value}], optional top-level system (Sky-T1_data_17k,
                     Bespoke-Stratos-17k, OpenThoughts-114k: system prompt plus thought markers)
    openai_messages  messages [{role, content}], optional reasoning_content on the assistant turn
    fields           flat columns named by a field mapping (problem, response, answer, tests, ...)

A sample is one assistant response to one prompt; its thinking is read by `verify.sft.split_thinking`
(Sky-T1 or <think> markers, or a separate channel), so every layout can be written in any SFT format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sky_distill.records import RecordError

LAYOUTS = ("openr1_math", "s1k", "sharegpt", "openai_messages", "fields")
DEFAULT_FIELDS = {"problem": "problem", "response": "response", "answer": "answer", "tests": "tests", "id": "id"}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
EXPECTED = (
    "conversations (sharegpt), messages (openai_messages), question+thinking_trajectories+attempt (s1k), "
    "problem+generations (openr1_math), or a field mapping's problem+response (fields)"
)


class LayoutError(ValueError):
    """A row that fits no layout, or breaks the one detected; carries the `RecordError`."""

    def __init__(self, error: RecordError):
        self.error = error
        super().__init__(str(error))


@dataclass(frozen=True)
class Sample:
    """One response to one prompt, in any layout's terms."""

    prompt: list[dict[str, str]]  # the turns before the response (system, user, earlier turns)
    response: str  # the assistant turn as written (may hold thought markers)
    reasoning: str | None = None  # a separate thinking channel (s1K's trajectory, reasoning_content)
    answer: str = ""  # the gold answer, when the row has one
    tests: Any = None  # a code problem's tests, when the row has them
    correct: bool | None = None  # the set's own correctness label (OpenR1-Math), if any
    truncated: bool = False
    row_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def problem(self) -> str:
        """The last user turn: the problem the response answers."""
        users = [turn["content"] for turn in self.prompt if turn["role"] == "user"]
        return users[-1] if users else ""


def thought_markers(text: str) -> str:
    """The thought format a response's markers show: sky_t1, think or none."""
    if "<|begin_of_thought|>" in text:
        return "sky_t1"
    if "</think>" in text:
        return "think"
    return "none"


def detect_layout(row: Mapping[str, Any], fields: Mapping[str, str] | None = None) -> str | None:
    """The layout a row's fields show, or None."""
    mapping = {**DEFAULT_FIELDS, **(fields or {})}
    if isinstance(row.get("generations"), list) and "problem" in row:
        return "openr1_math"
    if "question" in row and "attempt" in row and ("thinking_trajectories" in row or "cot" in row):
        return "s1k"
    if isinstance(row.get("conversations"), list):
        return "sharegpt"
    if isinstance(row.get("messages"), list):
        return "openai_messages"
    if mapping["problem"] in row and mapping["response"] in row:
        return "fields"
    return None


def row_samples(
    row: Mapping[str, Any], layout: str, where: tuple[str, int], fields: Mapping[str, str] | None = None
) -> list[Sample]:
    """The samples of one row in `layout`; a row that breaks it raises `LayoutError` naming file, line, field."""
    path, line = where

    def fail(name: str, message: str) -> LayoutError:
        return LayoutError(RecordError(path, line, name, message))

    if not isinstance(row, Mapping):
        raise fail("<json>", f"expected an object, got {type(row).__name__}")
    found = detect_layout(row, fields)
    if found != layout:
        seen = ", ".join(sorted(map(str, row))) or "none"
        detail = f"this row looks like {found}" if found else f"no known layout (expected {EXPECTED})"
        raise fail("<layout>", f"{detail}, not {layout}; fields found: {seen}")
    convert = {
        "openr1_math": _openr1_math,
        "s1k": _s1k,
        "sharegpt": _sharegpt,
        "openai_messages": _openai_messages,
        "fields": _fields,
    }[layout]
    return convert(row, fail, {**DEFAULT_FIELDS, **(fields or {})})


def unknown_layout(row: Any, where: tuple[str, int]) -> LayoutError:
    """The error for a first row that fits no layout: file, line and the fields it has."""
    seen = ", ".join(sorted(map(str, row))) if isinstance(row, Mapping) else type(row).__name__
    return LayoutError(
        RecordError(where[0], where[1], "<layout>", f"no known layout (expected {EXPECTED}); fields found: {seen}")
    )


def _text(row: Mapping[str, Any], name: str, fail: Any, required: bool = True) -> str:
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise fail(name, "missing or empty")
        return ""
    if not isinstance(value, str):
        if isinstance(value, (int, float)):
            return str(value)
        raise fail(name, f"expected text, got {type(value).__name__}")
    return value


def _row_id(row: Mapping[str, Any]) -> str | None:
    for name in ("id", "uuid", "problem_id"):
        if row.get(name) not in (None, ""):
            return str(row[name])
    return None


def _gold(row: Mapping[str, Any]) -> str:
    for name in ("answer", "gold", "ground_truth", "ground_truth_solution", "solution"):
        value = row.get(name)
        if isinstance(value, (str, int, float)) and str(value).strip():
            return str(value)
    return ""


def _system(row: Mapping[str, Any], fail: Any) -> list[dict[str, str]]:
    system = row.get("system")
    if system in (None, ""):
        return []
    if not isinstance(system, str):
        raise fail("system", f"expected text, got {type(system).__name__}")
    return [{"role": "system", "content": system}]


def _split_turns(turns: list[dict[str, str]], name: str, fail: Any) -> tuple[list[dict[str, str]], str, int]:
    """(prompt, response, index of the response turn): the response is the last assistant turn."""
    last = max((index for index, turn in enumerate(turns) if turn["role"] == "assistant"), default=None)
    if last is None:
        raise fail(name, "no assistant turn")
    if not any(turn["role"] == "user" for turn in turns[:last]):
        raise fail(name, "no user turn before the assistant turn")
    if not turns[last]["content"].strip():
        raise fail(f"{name}.{last}", "empty assistant turn")
    return turns[:last], turns[last]["content"], last


def _sharegpt(row: Mapping[str, Any], fail: Any, _: Mapping[str, str]) -> list[Sample]:
    turns = []
    for index, turn in enumerate(row["conversations"]):
        if not isinstance(turn, Mapping):
            raise fail(f"conversations.{index}", "expected an object with from/value")
        speaker, value = turn.get("from"), turn.get("value")
        if speaker not in SHAREGPT_ROLES:
            raise fail(f"conversations.{index}.from", f"unknown role {speaker!r} (expected {sorted(SHAREGPT_ROLES)})")
        if not isinstance(value, str):
            raise fail(f"conversations.{index}.value", "missing or not text")
        turns.append({"role": SHAREGPT_ROLES[speaker], "content": value})
    prompt, response, _ = _split_turns(turns, "conversations", fail)
    if not any(turn["role"] == "system" for turn in prompt):
        prompt = [*_system(row, fail), *prompt]
    return [Sample(prompt=prompt, response=response, answer=_gold(row), row_id=_row_id(row))]


def _openai_messages(row: Mapping[str, Any], fail: Any, _: Mapping[str, str]) -> list[Sample]:
    turns, reasoning = [], None
    for index, message in enumerate(row["messages"]):
        if not isinstance(message, Mapping):
            raise fail(f"messages.{index}", "expected an object with role/content")
        role, content = message.get("role"), message.get("content")
        if role not in ("system", "user", "assistant"):
            raise fail(f"messages.{index}.role", f"unknown role {role!r} (expected system, user, assistant)")
        if not isinstance(content, str):
            raise fail(f"messages.{index}.content", "missing or not text")
        turns.append({"role": role, "content": content})
        reasoning = message.get("reasoning_content") or message.get("reasoning") or reasoning
    prompt, response, _ = _split_turns(turns, "messages", fail)
    return [Sample(prompt=prompt, response=response, reasoning=reasoning, answer=_gold(row), row_id=_row_id(row))]


def _s1k(row: Mapping[str, Any], fail: Any, _: Mapping[str, str]) -> list[Sample]:
    name = "thinking_trajectories" if "thinking_trajectories" in row else "cot"
    thinking = row[name]
    if isinstance(thinking, Sequence) and not isinstance(thinking, str):
        if not all(isinstance(part, str) for part in thinking):
            raise fail(name, "expected text or a list of texts")
        thinking = "\n".join(thinking)
    if not isinstance(thinking, str) or not thinking.strip():
        raise fail(name, "missing or empty thinking")
    question, attempt = _text(row, "question", fail), _text(row, "attempt", fail)
    answer = _text(row, "solution", fail, required=False) or _gold(row)
    prompt = [*_system(row, fail), {"role": "user", "content": question}]
    return [Sample(prompt=prompt, response=attempt, reasoning=thinking, answer=answer, row_id=_row_id(row))]


def _flag_list(row: Mapping[str, Any], name: str, count: int, fail: Any) -> list[Any] | None:
    values = row.get(name)
    if values is None:
        return None
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) != count:
        raise fail(name, f"expected a list of {count} values, one per generation")
    return list(values)


def _openr1_math(row: Mapping[str, Any], fail: Any, _: Mapping[str, str]) -> list[Sample]:
    problem = _text(row, "problem", fail)
    generations = row["generations"]
    if not generations:
        raise fail("generations", "empty list")
    count = len(generations)
    verified = _flag_list(row, "correctness_math_verify", count, fail)
    judged = _flag_list(row, "correctness_llama", count, fail)
    complete = _flag_list(row, "is_reasoning_complete", count, fail)
    finish = _flag_list(row, "finish_reasons", count, fail)
    answer = _text(row, "answer", fail, required=False) or _gold(row)
    samples = []
    for index, generation in enumerate(generations):
        if not isinstance(generation, str) or not generation.strip():
            raise fail(f"generations.{index}", "missing or empty generation")
        labels = [flags[index] for flags in (verified, judged) if flags is not None and flags[index] is not None]
        correct = any(bool(label) for label in labels) if labels else None
        truncated = (complete is not None and complete[index] is False) or (
            finish is not None and finish[index] == "length"
        )
        samples.append(
            Sample(
                prompt=[{"role": "user", "content": problem}],
                response=generation,
                answer=answer,
                correct=correct,
                truncated=bool(truncated),
                row_id=_row_id(row),
            )
        )
    return samples


def _fields(row: Mapping[str, Any], fail: Any, mapping: Mapping[str, str]) -> list[Sample]:
    problem = _text(row, mapping["problem"], fail)
    response = _text(row, mapping["response"], fail)
    answer = _text(row, mapping["answer"], fail, required=False)
    system = _text(row, mapping.get("system", "system"), fail, required=False)
    reasoning = _text(row, mapping["reasoning"], fail, required=False) if "reasoning" in mapping else None
    correct = row.get(mapping["correct"]) if "correct" in mapping else None
    if isinstance(correct, str):
        correct = {"true": True, "false": False}.get(correct.strip().lower(), correct)
    if correct is not None and not isinstance(correct, bool):
        raise fail(mapping["correct"], f"expected true or false, got {correct!r}")
    prompt = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": problem}]
    row_id = str(row[mapping["id"]]) if row.get(mapping["id"]) not in (None, "") else _row_id(row)
    return [
        Sample(
            prompt=prompt,
            response=response,
            reasoning=reasoning or None,
            answer=answer,
            tests=row.get(mapping["tests"]),
            correct=correct,
            row_id=row_id,
        )
    ]
