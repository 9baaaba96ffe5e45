"""SFT records from kept traces: chat messages with the thinking in the chosen tags, and provenance. Pure.

Formats of the assistant turn:
    raw     the teacher's response as it is
    think   `<think>\\n{thinking}\\n</think>\\n\\n{answer}` (DeepSeek-R1 / Qwen3 style)
    sky_t1  `<|begin_of_thought|>\\n\\n{thinking}\\n\\n<|end_of_thought|>\\n\\n<|begin_of_solution|>\\n\\n{answer}\\n\\n<|end_of_solution|>`

The thinking and the answer come from the trace: its separate `reasoning` channel, `<think>`
tags, or Sky-T1 tags; a response without any is split before its closing paragraph (the one that
states the final answer or holds the code block), and kept whole as the answer when it has a
single paragraph.
"""

from __future__ import annotations

import re
from typing import Any

from sky_distill.records import Message, SFTExample, Trace, Verdict

FORMATS = ("raw", "think", "sky_t1")
SFT_SCHEMA_VERSION = "1"

_SKY_T1 = re.compile(
    r"<\|begin_of_thought\|>(.*?)<\|end_of_thought\|>\s*(?:<\|begin_of_solution\|>(.*?)(?:<\|end_of_solution\|>|$))?",
    re.DOTALL,
)
_THINK = re.compile(r"^\s*(?:<think>)?(.*?)</think>(.*)$", re.DOTALL)


def split_thinking(response: str, reasoning: str | None = None) -> tuple[str, str]:
    """(thinking, answer) of a response; thinking may be empty."""
    if reasoning:
        return reasoning.strip(), response.strip()
    sky = _SKY_T1.search(response)
    if sky:
        return sky.group(1).strip(), (sky.group(2) or "").strip()
    think = _THINK.match(response)
    if think:
        return think.group(1).strip(), think.group(2).strip()
    paragraphs = _paragraphs(response.strip())
    if len(paragraphs) < 2:
        return "", response.strip()
    return "\n\n".join(paragraphs[:-1]).strip(), paragraphs[-1].strip()


def _paragraphs(text: str) -> list[str]:
    """Blocks separated by blank lines; a fenced code block stays whole (its blank lines do not split it)."""
    paragraphs, current, fenced = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not line.strip() and not fenced:
            if current:
                paragraphs.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        paragraphs.append("\n".join(current))
    return paragraphs


def format_assistant(thinking: str, answer: str, response: str, style: str) -> str:
    """The assistant turn in one of `FORMATS`."""
    if style == "raw":
        return response
    if style == "think":
        return f"<think>\n{thinking}\n</think>\n\n{answer}"
    if style == "sky_t1":
        return (
            f"<|begin_of_thought|>\n\n{thinking}\n\n<|end_of_thought|>\n\n"
            f"<|begin_of_solution|>\n\n{answer}\n\n<|end_of_solution|>"
        )
    raise ValueError(f"verify.sft.format must be one of {FORMATS}, got {style!r}")


def to_sft_example(
    trace: Trace, verdict: Verdict, style: str = "raw", system_prompt: str | None = None, run: str = ""
) -> SFTExample:
    """A chat record: (system,) user, assistant; metadata says where it came from, same keys in every record."""
    prompt = [message for message in trace.messages if message.role != "system"]
    system = [m for m in trace.messages if m.role == "system"] if system_prompt is None else []
    if system_prompt:
        system = [Message(role="system", content=system_prompt)]
    thinking, answer = split_thinking(trace.response, trace.reasoning)
    content = format_assistant(thinking, answer, trace.response, style)
    metadata: dict[str, Any] = {
        "teacher": trace.model,
        "engine": trace.engine,
        "seed": trace.seed,
        "sampling": trace.sampling,
        "completion_tokens": trace.completion_tokens,
        "finish_reason": trace.finish_reason,
        "verdict": verdict.status,
        "extracted": verdict.extracted,
        "verifier_version": verdict.verifier_version,
        "format": style,
        "thinking_chars": len(thinking),
        "run": run,
        "schema": SFT_SCHEMA_VERSION,
    }
    return SFTExample(
        messages=[*system, *prompt, Message(role="assistant", content=content)],
        problem_id=trace.problem_id,
        sample_index=trace.sample_index,
        source=trace.source,
        metadata=metadata,
    )
