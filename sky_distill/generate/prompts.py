"""Prompt building: a problem becomes the chat messages sent to a model. Pure."""

from __future__ import annotations

from sky_distill.records import Message, Problem


def build_messages(problem: Problem, prompt_template: str, system_prompt: str | None) -> list[Message]:
    """System prompt (if any) and the user turn: the problem set into the model's template."""
    messages = [Message(role="system", content=system_prompt)] if system_prompt else []
    messages.append(Message(role="user", content=prompt_template.format(problem=problem.problem)))
    return messages


def sample_seed(base_seed: int, problem_id: str, sample_index: int) -> int:
    """A per-sample seed: the same sample gets the same seed however the work is split or resumed."""
    import hashlib

    digest = hashlib.blake2b(f"{base_seed}/{problem_id}/{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31 - 1)
