"""`sky-distill bootstrap`: build the tiny teacher and student from scratch, once, and cache them.

A tiny model is trained with the same SFT recipe as the train stage, on reference responses
of the synthetic task: worked step-by-step solutions (the teacher) or bare answers (the base
student). The result is cached at the model's `path` with a fingerprint of everything that
shaped it; a later run with the same settings reuses it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from sky_distill.config import BootstrapConfig, LoggerConfig, ModelConfig, TaskConfig, TrainConfig
from sky_distill.models.fingerprint import bootstrap_fingerprint
from sky_distill.models.tiny import TinyModelSpec, save_tiny_model
from sky_distill.records import Message, SFTExample, write_jsonl
from sky_distill.runs import read_json, write_json_atomic
from sky_distill.tasks.arithmetic import ArithmeticSpec, make_problems, reference_response
from sky_distill.train.job import TrainJob
from sky_distill.train.launch import launch

log = logging.getLogger(__name__)
MARKER = "bootstrap.json"


def model_fingerprint(model: ModelConfig, task: TaskConfig) -> str:
    """The fingerprint that also names the model's cache directory (`models/fingerprint.py`)."""
    return bootstrap_fingerprint(
        model.bootstrap.model_dump(), model.prompt_template, model.system_prompt, task.model_dump()
    )


def is_current(model: ModelConfig, fingerprint: str) -> bool:
    marker = Path(model.path) / MARKER
    return marker.exists() and read_json(marker).get("fingerprint") == fingerprint


def reference_examples(model: ModelConfig, task: TaskConfig, boot: BootstrapConfig) -> list[SFTExample]:
    from sky_distill.generate.prompts import build_messages

    spec = ArithmeticSpec(task.min_digits, task.max_digits, task.seed)
    problems = make_problems(spec, "train", boot.num_examples)
    return [
        SFTExample(
            messages=[
                *build_messages(p, model.prompt_template, model.system_prompt),
                Message(role="assistant", content=reference_response(p, boot.style, boot.carry_slip, boot.seed)),
            ],
            problem_id=p.id,
            source="bootstrap",
        )
        for p in problems
    ]


def bootstrap_model(model: ModelConfig, task: TaskConfig, num_procs: int, logger: LoggerConfig) -> dict[str, Any]:
    """Train `model` from scratch unless a current copy is cached at its path.

    The model's own `bootstrap.seed` fixes its weights, not the run's seed: the teacher stands
    for a given large model, the same for every seed of an experiment.
    """
    if model.bootstrap is None:
        return {"model": model.name, "status": "not a bootstrapped model"}
    if task.kind != "arithmetic":
        raise ValueError(f"bootstrapping {model.name} needs the arithmetic task, got task.kind={task.kind!r}")
    fingerprint = model_fingerprint(model, task)
    if is_current(model, fingerprint):
        log.info("%s: cached at %s", model.name, model.path)
        return {"model": model.name, "status": "cached", "path": model.path}
    boot = model.bootstrap
    work = Path(f"{model.path}.build")
    shutil.rmtree(work, ignore_errors=True)
    spec = TinyModelSpec(
        architecture=boot.architecture,
        hidden_size=boot.hidden_size,
        num_layers=boot.num_layers,
        num_heads=boot.num_heads,
        num_kv_heads=boot.num_kv_heads,
        intermediate_size=boot.intermediate_size,
        max_position_embeddings=model.engine.max_model_len or 1024,
    )
    save_tiny_model(spec, work / "init", boot.seed)
    write_jsonl(work / "data.jsonl", reference_examples(model, task, boot))
    train = TrainConfig(
        name=f"bootstrap-{model.name}",
        init=str(work / "init"),
        max_steps=boot.max_steps,
        epochs=100,
        learning_rate=boot.learning_rate,
        warmup_ratio=0.05,
        global_batch_size=boot.batch_size,
        micro_batch_size=boot.batch_size,
        max_seq_len=spec.max_position_embeddings,
        packing=False,
        precision="fp32",
        num_procs=num_procs,
        seed=boot.seed,
        log_every=50,
    )
    job = TrainJob(
        train=train,
        zero={"stage": 2},
        data_files=[str(work / "data.jsonl")],
        output_dir=str(work / "train"),
        logger=logger,
    )
    launch(job)
    target = Path(model.path)
    shutil.rmtree(target, ignore_errors=True)
    (work / "train" / "final").rename(target)
    summary = {
        "model": model.name,
        "status": "built",
        "path": str(target),
        "fingerprint": fingerprint,
        "spec": spec.__dict__,
        "bootstrap": boot.model_dump(),
    }
    write_json_atomic(target / MARKER, summary)
    shutil.rmtree(work, ignore_errors=True)
    return summary


def run(cfg: Any) -> dict[str, Any]:
    from sky_distill.config import stage_config

    typed = stage_config(cfg, "bootstrap")
    return {
        role: bootstrap_model(typed[role], typed["task"], typed["train"].num_procs, LoggerConfig())
        for role in ("teacher", "student")
    }
