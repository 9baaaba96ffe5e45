"""`sky-distill train`: fine-tune the student on this run's curated traces with DeepSpeed.

Input: `<run_dir>/verify/sft/{verified,all}.jsonl` (train.data picks), or files / Hub datasets
converted into `<output>/data/` (sky_distill.data_sources); with train.loss=on_policy the student's
own samples, round by round (train/on_policy.py), and no verify stage input. Output:
`<run_dir>/train/<train.name>/` with checkpoints, metrics.jsonl, `final/` (a Hugging Face
model with tokenizer and provenance.json) and COMPLETE.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sky_distill.config import ON_POLICY_GROUPS, stage_config, to_container, validate_groups
from sky_distill.data_sources.train_data import is_external, prepare_train_data
from sky_distill.errors import MissingInputError
from sky_distill.models.reference import check_model_reference
from sky_distill.runs import completion, fingerprint_files, provenance
from sky_distill.train.job import TrainJob
from sky_distill.train.launch import launch

SFT_FILES = {"verified": "verified.jsonl", "all": "all.jsonl"}


def train_output_dir(run_dir: str | Path, name: str) -> Path:
    return Path(run_dir) / "train" / name


def run(cfg: Any) -> dict[str, Any]:
    typed = stage_config(cfg, "train")
    train, paths, logger = typed["train"], typed["paths"], typed["logger"]
    if train.loss == "on_policy":
        return run_on_policy(cfg, typed | validate_groups(cfg, ON_POLICY_GROUPS))
    verify_dir = Path(paths.run_dir) / "verify"
    check_model_reference(
        train.init, "train.init", "set train.init, or run `sky-distill bootstrap` for the tiny models"
    )
    output_dir = train_output_dir(paths.run_dir, train.name)
    if is_external(train.data):  # files or Hub datasets, converted to SFT records (README, Bring your own data)
        data_files = prepare_train_data(train.data, train.data_format, train.seed, output_dir / "data")[0]
    elif completion(verify_dir) is None:
        raise MissingInputError(f"no complete verification in {verify_dir}; run `sky-distill verify` first")
    else:
        data_files = [str(verify_dir / "sft" / SFT_FILES[train.data])]
    container = to_container(cfg)
    topk_dirs = []
    if train.loss == "distill" and train.distill.teacher == "offline" and train.distill.kd_weight > 0:
        from sky_distill.generate.topk_store import store_directories

        topk_dirs = [str(path) for path in store_directories(Path(paths.run_dir) / "generate" / "shards")]
        if not topk_dirs:
            raise MissingInputError(
                f"offline distillation needs the teacher's top-k log-probs in {paths.run_dir}/generate/shards/*.topk; "
                "generate with generate.sampling.logprobs=k (or use train.distill.teacher=online)"
            )
    job = TrainJob(
        train=train,
        zero=container["deepspeed"]["zero_optimization"],
        data_files=data_files,
        teacher_topk_dirs=topk_dirs,
        output_dir=str(output_dir),
        logger=logger,
        provenance=provenance("train", container, {"data": fingerprint_files(data_files), "init": train.init}),
    )
    launch(job)
    return completion(output_dir) or {}


def run_on_policy(cfg: Any, typed: dict[str, Any]) -> dict[str, Any]:
    """train.loss=on_policy: rounds of student samples, teacher scores and updates (train/on_policy.py)."""
    from sky_distill.train.on_policy import OnPolicyRun, run_rounds

    train, paths = typed["train"], typed["paths"]
    if train.on_policy.start_from:  # e.g. sft_verified, trained earlier in this run's chain
        start = train_output_dir(paths.run_dir, train.on_policy.start_from)
        if completion(start) is None:
            raise MissingInputError(
                f"train.on_policy.start_from={train.on_policy.start_from}: no complete student in {start}; train it first"
            )
        train = train.model_copy(update={"init": str(start / "final")})
    check_model_reference(
        train.init, "train.init", "set train.init, or run `sky-distill bootstrap` for the tiny models"
    )
    output_dir = train_output_dir(paths.run_dir, train.name)
    if completion(output_dir) is not None:
        return completion(output_dir) or {}
    output_dir.mkdir(parents=True, exist_ok=True)
    container = to_container(cfg)
    run = OnPolicyRun(
        train=train,
        student=typed["student"],
        task=typed["task"],
        verify=typed["verify"],
        zero=container["deepspeed"]["zero_optimization"],
        logger=typed["logger"],
        output_dir=output_dir,
        provenance=provenance("train", container, {"init": train.init, "teacher": train.on_policy.teacher_path}),
    )
    return run_rounds(run)
