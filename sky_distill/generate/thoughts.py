"""Thought formats: how a teacher's recorded response separates its thinking from its answer. Pure.

`think`: `<think>...</think>answer` (R1 and its distills, QwQ-32B; the opening tag may sit in the
prompt, written by the chat template). `sky_t1`: `<|begin_of_thought|>...<|end_of_thought|>`
then `<|begin_of_solution|>...<|end_of_solution|>`. `reasoning_field`: the API returned the
thinking in its own channel (`Trace.reasoning`). `none`: free-form text (QwQ-32B-Preview).
Traces store the raw text; this module only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

THINK = ("<think>", "</think>")
SKY_T1_THOUGHT = ("<|begin_of_thought|>", "<|end_of_thought|>")
SKY_T1_SOLUTION = ("<|begin_of_solution|>", "<|end_of_solution|>")


@dataclass(frozen=True)
class ThoughtSplit:
    thought: str | None  # None when the format has no separate thinking
    answer: str  # what follows the thinking: the solution the verifier reads
    closed: bool  # the thinking ended; False means the response stopped mid-thought


def _between(text: str, start: str, end: str) -> tuple[str, str | None]:
    """(inside, after) of `start...end`; the start marker is optional, `after` is None if `end` is missing."""
    head = text.lstrip()
    body = head[len(start) :] if head.startswith(start) else text
    if end not in body:
        return body, None
    inside, after = body.split(end, 1)
    return inside, after


def split_thought(response: str, reasoning: str | None, thought_format: str) -> ThoughtSplit:
    """Split a recorded response into thinking and answer according to its thought format."""
    if thought_format == "none":
        return ThoughtSplit(None, response, True)
    if thought_format == "reasoning_field":
        return ThoughtSplit(reasoning, response, reasoning is None or bool(response.strip()))
    if thought_format == "think":
        inside, after = _between(response, *THINK)
        return ThoughtSplit(inside.strip(), (after or "").strip(), after is not None)
    if thought_format == "sky_t1":
        inside, after = _between(response, *SKY_T1_THOUGHT)
        if after is None:
            return ThoughtSplit(inside.strip(), "", False)
        solution, _ = _between(after, *SKY_T1_SOLUTION)
        return ThoughtSplit(inside.strip(), solution.strip(), True)
    raise ValueError(f"unknown thought format {thought_format!r}")
