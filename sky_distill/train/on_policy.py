"""On-policy distillation in rounds (train.loss=on_policy): the student samples, the teacher grades
every token, the student learns on its own samples.

Round r, in `<train dir>/rounds/round-NNN/`, each part complete or redone, like the stages:

1. **sample** (`samples/`): the student of round r - staleness answers `prompts_per_round` training
   prompts `samples_per_prompt` times through the generate stage's vLLM engine and shard writer
   (per-sample seeds, the same prompt templates, resumable); on CPU the engine loads the
   student's saved weights afresh each round.
2. **verify and score** (`scores.npz`): the verifier checks each sample (accuracy on its own
   samples; optionally the filter or reward of the loss); a forward pass of the teacher and of the
   sampling student gives every sampled token's log-probs (`teacher_scoring.py`).
3. **update** (`update/`): the DeepSpeed recipe (`sft.run`, the same launch as `sky-distill
   train`) takes `steps_per_round` steps of `OnPolicyLoss` on those samples, from the latest
   student, resuming from its checkpoints if killed; its `final/` is the next round's student.

`COMPLETE.json` of a round holds its metrics and provenance (which student sampled, which was
updated, the teacher, the sampling); the run's `final/` is the last round's student.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sky_distill.config import (
    GenerateConfig,
    LoggerConfig,
    ModelConfig,
    SamplingConfig,
    TaskConfig,
    TrainConfig,
    VerifyConfig,
)
from sky_distill.errors import SkyDistillError
from sky_distill.generate.shards import shard_name
from sky_distill.records import Problem, Trace, iter_jsonl, write_jsonl
from sky_distill.runs import completion, fingerprint_object, mark_complete, write_json_atomic
from sky_distill.train.job import TrainJob
from sky_distill.train.on_policy_data import SCORES_FILE, ScoredSample, read_scores, write_scores

log = logging.getLogger(__name__)
SAMPLE_SHARD = shard_name(0, 1)  # one shard per round


class RoundFailedError(SkyDistillError):
    """A round could not finish one of its parts; a re-run resumes it."""


def sampling_mechanisms():
    """The generate stage's engine and shard writer (heavy: imported when a round samples)."""
    from sky_distill.generate.sampling import LazyEngine, generate_shard

    return LazyEngine, generate_shard


def verify_mechanism():
    """The verifier batch that curates traces and scores eval runs."""
    from sky_distill.verify.batch import verify_responses

    return verify_responses


@dataclass(frozen=True)
class OnPolicyRun:
    """Everything the rounds need, typed at the stage boundary."""

    train: TrainConfig
    student: ModelConfig
    task: TaskConfig
    verify: VerifyConfig
    zero: dict[str, Any]
    logger: LoggerConfig
    output_dir: Path
    provenance: dict[str, Any]


def round_dir(output_dir: Path, index: int) -> Path:
    return output_dir / "rounds" / f"round-{index:03d}"


def student_after(run: OnPolicyRun, rounds_done: int) -> str:
    """The student's weights after `rounds_done` rounds: train.init, then each round's export."""
    if rounds_done == 0:
        return run.train.init
    return str(round_dir(run.output_dir, rounds_done - 1) / "update" / "final")


def round_problems(problems: list[Problem], per_round: int, index: int, seed: int) -> list[Problem]:
    """Round `index`'s prompts: the next `per_round` of one seeded shuffle of the split (wrapping). Pure."""
    order = list(range(len(problems)))
    random.Random(f"on-policy-{seed}").shuffle(order)
    start = index * per_round
    picked = [order[(start + offset) % len(order)] for offset in range(min(per_round, len(order)))]
    return [problems[position] for position in picked]


def round_sampling(run: OnPolicyRun, index: int) -> SamplingConfig:
    opd = run.train.on_policy
    return SamplingConfig(
        n=opd.samples_per_prompt,
        temperature=opd.temperature,
        max_tokens=opd.max_tokens,
        seed=run.train.seed * 1000 + index,  # with the problem id and sample index: each sample's seed
        logprobs=0,  # returns the sampled token ids
    )


def sample_round(run: OnPolicyRun, index: int, problems: list[Problem], sampler: ModelConfig) -> Path:
    """Fill the round's trace shard (resumable); the path of its trace file."""
    LazyEngine, generate_shard = sampling_mechanisms()
    directory = round_dir(run.output_dir, index) / "samples"
    config = GenerateConfig(sampling=round_sampling(run, index))
    engine = LazyEngine(sampler, config.sampling.seed)
    try:
        summary = generate_shard(problems, sampler, config, directory, engine, provenance=run.provenance)
    finally:
        engine.close()
    if not summary["complete"]:
        raise RoundFailedError(
            f"round {index}: {summary['done_samples']} of {summary['expected_samples']} samples "
            f"(see {summary['errors_file']}); run again to resume"
        )
    return directory / f"{SAMPLE_SHARD}.jsonl"


def read_traces(path: Path) -> list[Trace]:
    traces = []
    for line, item in iter_jsonl(path, Trace):
        if not isinstance(item, Trace):
            raise RoundFailedError(f"{path}:{line}: unreadable sample: {item}")
        if item.token_ids is None:
            raise RoundFailedError(f"{path}:{line}: token_ids: the sample has no token ids to train on")
        traces.append(item)
    return sorted(traces, key=lambda trace: trace.key)


def score_round(
    run: OnPolicyRun, index: int, traces: list[Trace], problems: list[Problem], sampler: ModelConfig, teacher: Any
) -> Path:
    """Verify every sample and score its tokens with the teacher and the sampling student."""
    from transformers import AutoTokenizer

    from sky_distill.generate.prompts import render_prompt_ids, resolve_chat_template
    from sky_distill.train.teacher_scoring import load_scorer, score_tokens

    path = round_dir(run.output_dir, index) / SCORES_FILE
    verify_responses = verify_mechanism()
    verdicts = verify_responses(
        [(trace.problem_id, trace.sample_index, trace.response) for trace in traces],
        {problem.id: problem for problem in problems},
        run.verify.timeout_s,
        run.verify.workers,
    )
    tokenizer = AutoTokenizer.from_pretrained(sampler.path)
    template = resolve_chat_template(sampler.chat_template)
    pairs = []
    for trace in traces:
        prompt = render_prompt_ids(tokenizer, trace.messages, template, sampler.chat_template_kwargs)
        if len(prompt) != trace.prompt_tokens:
            raise RoundFailedError(
                f"round {index}: sample {trace.problem_id}/{trace.sample_index}: the prompt renders to "
                f"{len(prompt)} tokens, the engine sampled from {trace.prompt_tokens}"
            )
        pairs.append((prompt, list(trace.token_ids or [])))
    top_k = run.train.on_policy.top_k
    teacher_scores = score_tokens(teacher, pairs, top_k)
    old_scores = score_tokens(load_scorer(sampler.path), pairs, 0)
    samples = [
        ScoredSample(trace.problem_id, trace.sample_index, prompt, response, old, scored, float(verdict.correct))
        for trace, (prompt, response), old, scored, verdict in zip(traces, pairs, old_scores, teacher_scores, verdicts)
    ]
    write_scores(path, samples, top_k)
    return path


def update_round(run: OnPolicyRun, index: int, scores: Path) -> dict[str, Any]:
    """The DeepSpeed update on the round's samples, from the latest student (resumes its checkpoints)."""
    from sky_distill.train.launch import launch

    directory = round_dir(run.output_dir, index) / "update"
    done = completion(directory)
    if done is not None:
        return done
    steps = run.train.on_policy.steps_per_round
    train = run.train.model_copy(
        update={
            "init": student_after(run, index),
            "name": f"{run.train.name}-round-{index}",
            "max_steps": steps,
            "epochs": float(steps),  # max_steps decides: every epoch has at least one step
        }
    )
    job = TrainJob(
        train=train,
        zero=run.zero,
        data_files=[str(scores)],
        output_dir=str(directory),
        logger=run.logger,
        provenance=run.provenance,
    )
    launch(job)
    return completion(directory) or {}


def round_metrics(samples: list[ScoredSample], traces: list[Trace], update: dict[str, Any]) -> dict[str, Any]:
    """What a round did: the sampled reverse KL to the teacher per token, the student's accuracy on
    its own samples, lengths, and the update's loss. Pure."""
    old = np.concatenate([s.old.sampled for s in samples]) if samples else np.zeros(0)
    teacher = np.concatenate([s.teacher.sampled for s in samples]) if samples else np.zeros(0)
    lengths = [len(s.response_ids) for s in samples]
    return {
        "opd/samples": len(samples),
        "opd/reverse_kl_per_token": float(np.mean(old - teacher)) if len(old) else math.nan,
        "opd/reverse_kl_per_sample": float(np.sum(old - teacher) / max(len(samples), 1)),
        "opd/accuracy": float(np.mean([s.correct for s in samples])) if samples else math.nan,
        "opd/response_tokens_mean": float(np.mean(lengths)) if lengths else 0.0,
        "opd/truncated_fraction": float(np.mean([t.truncated for t in traces])) if traces else 0.0,
        "opd/update_final_loss": update.get("final_loss"),
        "opd/update_steps": update.get("steps"),
        "opd/update_target_tokens": update.get("train/data/target_tokens"),
    }


def run_round(run: OnPolicyRun, index: int, problems: list[Problem], teacher: Any) -> dict[str, Any]:
    directory = round_dir(run.output_dir, index)
    done = completion(directory)
    if done is not None:
        return done
    opd = run.train.on_policy
    mine = round_problems(problems, opd.prompts_per_round, index, run.train.seed)
    sampled_by = max(0, index - opd.staleness)
    sampler = run.student.model_copy(update={"path": student_after(run, sampled_by)})
    scores_path = directory / SCORES_FILE
    traces_path = directory / "samples" / f"{SAMPLE_SHARD}.jsonl"
    if not scores_path.exists():
        write_jsonl(directory / "problems.jsonl", mine)
        traces_path = sample_round(run, index, mine, sampler)
        score_round(run, index, read_traces(traces_path), mine, sampler, teacher)
    update = update_round(run, index, scores_path)
    summary = {
        "round": index,
        **round_metrics(read_scores(scores_path), read_traces(traces_path), update),
        "provenance": {
            "sampled_by": sampler.path,
            "sampled_by_round": sampled_by,
            "updated_from": student_after(run, index),
            "student": update.get("model_dir"),
            "teacher": opd.teacher_path,
            "sampling": round_sampling(run, index).model_dump(),
            "problems": fingerprint_object(sorted(problem.id for problem in mine)),
        },
    }
    mark_complete(directory, summary)
    log.info(
        "round %d: reverse KL %.4f per token, accuracy %.3f on its own samples",
        index,
        summary["opd/reverse_kl_per_token"],
        summary["opd/accuracy"],
    )
    return summary


def run_rounds(run: OnPolicyRun) -> dict[str, Any]:
    """Every round in order (complete ones are read back), then the last student as `final/`."""
    from sky_distill.tasks.loader import load_task_problems_located
    from sky_distill.train.teacher_scoring import load_scorer

    opd = run.train.on_policy
    if not opd.teacher_path:
        raise SkyDistillError("train.on_policy.teacher_path is not set: the teacher that scores the student")
    problems, errors, _ = load_task_problems_located(run.task, "train")
    if not problems:
        raise SkyDistillError(f"task {run.task.name!r} has no training problems ({len(errors)} rejected)")
    teacher = load_scorer(opd.teacher_path)
    rounds = [run_round(run, index, problems, teacher) for index in range(opd.rounds)]
    write_jsonl(run.output_dir / "rounds.jsonl", [{k: v for k, v in r.items() if k != "provenance"} for r in rounds])
    final = run.output_dir / "final"
    if final.exists():
        shutil.rmtree(final)
    staging = run.output_dir / "final.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(student_after(run, opd.rounds), staging)
    staging.rename(final)
    summary = {
        "name": run.train.name,
        "model_dir": str(final),
        "method": "on_policy",
        "rounds": len(rounds),
        "steps": sum(r["opd/update_steps"] or 0 for r in rounds),
        "samples": sum(r["opd/samples"] for r in rounds),
        "target_tokens": sum(r["opd/update_target_tokens"] or 0 for r in rounds),
        "per_round": rounds,
        "provenance": run.provenance,
    }
    write_json_atomic(final / "provenance.json", {"trained_by": "sky-distill train (on-policy)", **summary})
    mark_complete(run.output_dir, summary)
    return summary
