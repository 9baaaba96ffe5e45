"""A round's scored samples: their compact store, and their encoding as training examples.

`<round>/scores.npz` (written to a temporary name, then renamed: complete or absent) holds every
sample the student drew in the round, flat like the generation top-k store:

    problem_id [S] str   sample_index [S] int32   correct [S] float32 (1/0 verifier; nan: not verified)
    prompt_offsets [S + 1] int64, prompt_ids [P] int32        response_offsets [S + 1] int64,
    response_ids [T] int32   old [T] float32 (the sampling student's log-prob of each token)
    teacher [T] float32 (the teacher's)   topk_ids [T, k] int32, topk_logprobs [T, k] float16

The update trains on exactly the sampled tokens (prompt ids as the engine rendered them, then the
response ids), never a re-tokenization of the text.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sky_distill.records import RecordError
from sky_distill.train.data import IGNORE_INDEX, EncodedExample
from sky_distill.train.dataset import DataReport
from sky_distill.train.opd_loss import TokenScores
from sky_distill.train.teacher_scoring import TokenLogprobs

SCORES_FILE = "scores.npz"


@dataclass(frozen=True)
class ScoredSample:
    problem_id: str
    sample_index: int
    prompt_ids: list[int]
    response_ids: list[int]
    old: TokenLogprobs  # the sampling student's scores
    teacher: TokenLogprobs
    correct: float  # 1.0 / 0.0 by the verifier, nan if not verified


def _offsets(lengths: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)


def write_scores(path: str | Path, samples: Sequence[ScoredSample], top_k: int) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens = [len(s.response_ids) for s in samples]
    arrays = {
        "problem_id": np.asarray([s.problem_id for s in samples], dtype=str),
        "sample_index": np.asarray([s.sample_index for s in samples], dtype=np.int32),
        "correct": np.asarray([s.correct for s in samples], dtype=np.float32),
        "prompt_offsets": _offsets([len(s.prompt_ids) for s in samples]),
        "prompt_ids": np.asarray([t for s in samples for t in s.prompt_ids], dtype=np.int32),
        "response_offsets": _offsets(tokens),
        "response_ids": np.asarray([t for s in samples for t in s.response_ids], dtype=np.int32),
        "old": np.concatenate([s.old.sampled for s in samples] or [np.zeros(0)]).astype(np.float32),
        "teacher": np.concatenate([s.teacher.sampled for s in samples] or [np.zeros(0)]).astype(np.float32),
        "topk_ids": np.concatenate([s.teacher.ids for s in samples] or [np.zeros((0, top_k))]).astype(np.int32),
        "topk_logprobs": np.concatenate([s.teacher.logprobs for s in samples] or [np.zeros((0, top_k))]).astype(
            np.float16
        ),
    }
    temporary = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(temporary, **arrays)
    os.replace(temporary, path)


def read_scores(path: str | Path) -> list[ScoredSample]:
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    prompts, responses = arrays["prompt_offsets"], arrays["response_offsets"]
    samples = []
    for index, problem_id in enumerate(arrays["problem_id"].tolist()):
        span = slice(int(responses[index]), int(responses[index + 1]))
        samples.append(
            ScoredSample(
                problem_id=problem_id,
                sample_index=int(arrays["sample_index"][index]),
                prompt_ids=arrays["prompt_ids"][prompts[index] : prompts[index + 1]].tolist(),
                response_ids=arrays["response_ids"][span].tolist(),
                old=TokenLogprobs(arrays["old"][span], np.zeros((span.stop - span.start, 0), np.int32), np.zeros(0)),
                teacher=TokenLogprobs(arrays["teacher"][span], arrays["topk_ids"][span], arrays["topk_logprobs"][span]),
                correct=float(arrays["correct"][index]),
            )
        )
    return samples


def scored_example(sample: ScoredSample) -> EncodedExample:
    """The sample as a training example: its prompt unlabelled, its sampled tokens the targets."""
    n = len(sample.response_ids)
    correct = 0.0 if np.isnan(sample.correct) else sample.correct
    scores = TokenScores(
        ids=sample.teacher.ids,
        logprobs=sample.teacher.logprobs,
        old=sample.old.sampled,
        teacher=sample.teacher.sampled,
        correct=np.full(n, correct, dtype=np.float32),
    )
    return EncodedExample(
        input_ids=[*sample.prompt_ids, *sample.response_ids],
        labels=[IGNORE_INDEX] * len(sample.prompt_ids) + list(sample.response_ids),
        teacher=scores,
    )


def load_scored_examples(
    files: Sequence[str | Path], tokenizer: Any, max_seq_len: int, verifier: str = "off"
) -> tuple[list[EncodedExample], DataReport, set[int]]:
    """Every scored sample of the files as an example; with `verifier` filter, the rejected ones are
    dropped and counted; empty responses and samples over `max_seq_len` are rejected and named."""
    from sky_distill.train.templates import end_of_turn_ids

    stops = end_of_turn_ids(tokenizer)
    report, examples, learned = DataReport(), [], set()
    for path in files:
        for index, sample in enumerate(read_scores(path)):
            report.records += 1
            where = f"sample {sample.problem_id}/{sample.sample_index}"
            length = len(sample.prompt_ids) + len(sample.response_ids)
            if not sample.response_ids:
                report.reject(RecordError(str(path), index + 1, "response_ids", f"{where}: empty"), "empty_response")
                continue
            if length > max_seq_len:
                message = f"{where}: {length} tokens exceed train.max_seq_len {max_seq_len}"
                report.reject(RecordError(str(path), index + 1, "response_ids", message), "overlong")
                continue
            if verifier == "filter" and sample.correct != 1.0:
                message = f"{where}: the verifier rejected it (train.on_policy.verifier=filter)"
                report.reject(RecordError(str(path), index + 1, "correct", message), "verifier_rejected")
                continue
            example = scored_example(sample)
            report.kept += 1
            report.tokens += len(example)
            report.target_tokens += example.num_target_tokens
            report.longest = max(report.longest, length)
            examples.append(example)
            if sample.response_ids[-1] in stops:
                learned.add(sample.response_ids[-1])
    return examples, report, learned
