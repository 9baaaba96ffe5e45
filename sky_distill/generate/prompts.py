"""Prompt building: a problem becomes the chat messages sent to a model, then the token ids.

Messages are pure functions of the problem and the model's prompt settings (system prompt, a
template per task family); token ids come from the tokenizer's chat template or an override.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sky_distill.config import ModelConfig
from sky_distill.errors import MissingInputError
from sky_distill.records import Message, Problem

CHOICE_LABELS = string.ascii_uppercase


class PromptError(ValueError):
    """A problem that cannot be put into the model's prompt template (e.g. no choices to list)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


def format_choices(choices: Sequence[str]) -> str:
    """`A. first` / `B. second` ..., one per line."""
    if len(choices) > len(CHOICE_LABELS):
        raise PromptError("choices", f"{len(choices)} choices; at most {len(CHOICE_LABELS)} can be lettered")
    return "\n".join(f"{label}. {choice}" for label, choice in zip(CHOICE_LABELS, choices))


def format_prompt(template: str, problem: Problem) -> str:
    """The problem set into `template` (fields `{problem}` and, for multiple choice, `{choices}`)."""
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    values: dict[str, str] = {"problem": problem.problem}
    if "choices" in fields:
        if not problem.choices:
            raise PromptError("choices", "the prompt template lists {choices} but the problem has none")
        values["choices"] = format_choices(problem.choices)
    return template.format(**values)


def build_messages(problem: Problem, prompt_template: str, system_prompt: str | None) -> list[Message]:
    """System prompt (if any) and the user turn: the problem set into the model's template."""
    messages = [Message(role="system", content=system_prompt)] if system_prompt else []
    messages.append(Message(role="user", content=format_prompt(prompt_template, problem)))
    return messages


def template_for(problem: Problem, model: ModelConfig) -> str:
    """The model's template for the problem's task family (math, code, choice), else its default."""
    return model.prompt_templates.get(problem.answer_type, model.prompt_template)


def messages_for(problem: Problem, model: ModelConfig) -> list[Message]:
    return build_messages(problem, template_for(problem, model), model.system_prompt)


def resolve_chat_template(value: str | None) -> str | None:
    """A chat template override: Jinja text as given, or the contents of a `.jinja` file."""
    if value is None:
        return None
    if value.endswith((".jinja", ".j2")) and "{" not in value:
        path = Path(value).expanduser()
        if not path.is_file():
            raise MissingInputError(f"chat template file {value} does not exist (teacher.chat_template)")
        return path.read_text(encoding="utf-8")
    return value


def render_prompt_ids(
    tokenizer: Any,
    messages: Sequence[Message],
    chat_template: str | None = None,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> list[int]:
    """Token ids of the chat, ending with the assistant's generation prompt."""
    if chat_template is None and not getattr(tokenizer, "chat_template", None):
        raise PromptError("chat_template", "the tokenizer has no chat template; set teacher.chat_template")
    rendered = tokenizer.apply_chat_template(
        [message.model_dump() for message in messages],
        chat_template=chat_template,
        tokenize=True,
        add_generation_prompt=True,
        return_dict=False,
        **(chat_template_kwargs or {}),
    )
    return list(rendered["input_ids"] if hasattr(rendered, "keys") else rendered)


def sample_seed(base_seed: int, problem_id: str, sample_index: int) -> int:
    """A per-sample seed: the same sample gets the same seed however the work is split or resumed."""
    digest = hashlib.blake2b(f"{base_seed}/{problem_id}/{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31 - 1)
