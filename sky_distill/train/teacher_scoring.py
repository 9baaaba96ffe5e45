"""Scoring sampled tokens with a model's forward pass: per response token, the model's log-prob of
the token that was sampled and, optionally, its top-k (ids and log-probs).

On-policy distillation scores each student sample twice, with the teacher and with the student
that drew it (the `old` log-probs of the importance ratio), by this one function, so a student
identical to its teacher gets exactly equal scores. A forward pass suits teachers that fit beside
the round on one device; a teacher too large for that would be scored through vLLM's prompt
log-probs (`prompt_logprobs`), not implemented here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

BATCH_TOKENS = 8192  # padded positions per forward pass


@dataclass(frozen=True)
class TokenLogprobs:
    """One sample's response tokens as a model scores them: `sampled` [n] float32, `ids`/`logprobs` [n, k]."""

    sampled: np.ndarray
    ids: np.ndarray
    logprobs: np.ndarray


def _batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    batches, current, width = [], [], 0
    for index, length in enumerate(lengths):
        if current and max(width, length) * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, width = [], 0
        current.append(index)
        width = max(width, length)
    return batches + ([current] if current else [])


@torch.no_grad()
def score_tokens(
    model: Any,
    samples: Sequence[tuple[Sequence[int], Sequence[int]]],
    top_k: int = 0,
    batch_tokens: int = BATCH_TOKENS,
) -> list[TokenLogprobs]:
    """Each (prompt ids, response ids) scored by `model` (a causal LM in eval mode): the log-prob of
    every response token given what precedes it, and the model's top-k there."""
    device = next(model.parameters()).device
    lengths = [len(prompt) + len(response) for prompt, response in samples]
    results: list[TokenLogprobs | None] = [None] * len(samples)
    for batch in _batches(lengths, batch_tokens):
        width = max(lengths[index] for index in batch)
        input_ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, index in enumerate(batch):
            prompt, response = samples[index]
            input_ids[row, : lengths[index]] = torch.tensor([*prompt, *response])
            mask[row, : lengths[index]] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
        for row, index in enumerate(batch):
            prompt, response = samples[index]
            start = len(prompt) - 1  # the position that predicts the first response token
            logprobs = torch.log_softmax(logits[row, start : start + len(response)].float(), dim=-1)
            targets = torch.tensor(list(response), device=logprobs.device)
            sampled = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            if top_k:
                values, ids = logprobs.topk(min(top_k, logprobs.size(-1)), dim=-1)
            else:
                values, ids = logprobs.new_zeros((len(response), 0)), targets.new_zeros((len(response), 0))
            results[index] = TokenLogprobs(
                sampled.cpu().numpy().astype(np.float32),
                ids.cpu().numpy().astype(np.int32),
                values.cpu().numpy().astype(np.float16),
            )
    return results  # type: ignore[return-value]


def load_scorer(path: str) -> Any:
    """A model to score with: float32, eval mode, no gradients, on the first GPU if there is one."""
    from transformers import AutoModelForCausalLM

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model.eval().requires_grad_(False).to(device)
