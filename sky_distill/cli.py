"""`sky-distill <stage> [key=value ...]`: dispatch to a stage's Hydra entry point.

Errors a user can fix (bad config, missing inputs, unknown names) end the command with one
line naming what to fix; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from sky_distill.errors import SkyDistillError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
STAGES = {
    "bootstrap": ("sky_distill.models.bootstrap", "build the tiny teacher and student from scratch (cached)"),
    "generate": ("sky_distill.generate.stage", "sample n traces per problem from the teacher (one shard)"),
    "merge": ("sky_distill.generate.merge_stage", "check all generation shards and merge them"),
    "verify": ("sky_distill.verify.stage", "judge traces, keep the correct ones, write SFT data"),
    "train": ("sky_distill.train.stage", "fine-tune the student with DeepSpeed on the kept traces"),
    "eval": ("sky_distill.evaluate.stage", "score models on benchmarks"),
    "table": ("sky_distill.evaluate.table_stage", "compare eval results in a table"),
    "export": (
        "sky_distill.export.stage",
        "the SFT data as a Hugging Face dataset, model cards, harness-style eval files",
    ),
    "pipeline": ("sky_distill.pipeline", "run every stage in order, skipping complete ones"),
    "plan": ("sky_distill.plan", "print what a recipe runs: sources, shards, traces, steps (no work)"),
}
VALUE_FLAGS = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")
INFO_TOPICS = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")
NESTED_ENV = "SKY_DISTILL_NESTED"  # set by the pipeline for its stages: they print one line, it prints the table


def usage() -> str:
    lines = ["usage: sky-distill <stage> [key=value ...] [hydra flags]", "", "stages:"]
    lines += [f"  {name:<10} {description}" for name, (_, description) in STAGES.items()]
    lines += ["", "Config lives in conf/; e.g. `sky-distill pipeline run_name=try1 generate.sampling.n=4`."]
    lines += ["`sky-distill <stage> --help` lists the keys that stage reads, with defaults and comments."]
    return "\n".join(lines)


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """(overrides, Hydra flags with their values): flags may stand anywhere among the overrides."""
    overrides: list[str] = []
    flags: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("-"):
            overrides.append(arg)
        else:
            flags.append(arg)
            following = args[index + 1] if index + 1 < len(args) else None
            info_topic = arg in ("--info", "-i") and following in INFO_TOPICS
            if following is not None and (arg in VALUE_FLAGS or info_topic):
                flags.append(following)
                index += 1
        index += 1
    return overrides, flags


def error_lines(stage: str, error: BaseException) -> list[str]:
    """The message a user sees: one line, or a first line and one line per bad record / config key."""
    head = f"sky-distill {stage}: error: "
    details = getattr(error, "errors", None) or getattr(error, "problems", None)
    if isinstance(details, list) and len(details) > 1:
        noun = "bad lines" if hasattr(error, "errors") else "config problems"
        return [f"{head}{len(details)} {noun}:", *(f"  {' '.join(str(item).split())}" for item in details)]
    return [head + " ".join(str(error).split())]


def fail(stage: str, error: BaseException | str) -> None:
    lines = [f"sky-distill {stage}: error: {error}"] if isinstance(error, str) else error_lines(stage, error)
    print("\n".join(lines), file=sys.stderr)
    raise SystemExit(1)


def compose_checked(stage: str, overrides: list[str], check: bool = True) -> Any:
    """Compose (and validate) the config before Hydra runs, so a bad override is one clear error."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from sky_distill.config import check_config
    from sky_distill.tracking import check_tracker

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
            from hydra.core.hydra_config import HydraConfig

            HydraConfig.instance().set_config(cfg)
            if check:
                check_config(cfg, stage)
                if stage in ("train", "pipeline"):
                    check_tracker(cfg.logger)  # before any model loads, not inside training
    except (HydraException, OmegaConfBaseException) as error:
        fail(stage, error)
    except SkyDistillError as error:
        fail(stage, error)
    return cfg


def precheck(stage: str, overrides: list[str]) -> None:
    compose_checked(stage, overrides)


def run_stage(stage: str, cfg: Any) -> Any:
    from sky_distill.log import setup_logging
    from sky_distill.seeding import seed_everything
    from sky_distill.sweeps import apply_sweep_run_dir

    setup_logging()
    sweep_dir = apply_sweep_run_dir(cfg)  # each --multirun job writes to its own run directory
    if sweep_dir:
        logging.getLogger("sky_distill").info("sweep job run directory: %s", sweep_dir)
    seed_everything(int(cfg.seed))
    module = importlib.import_module(STAGES[stage][0])
    try:
        result = module.run(cfg)
    except SkyDistillError as error:
        logging.getLogger("sky_distill").debug("stage failed", exc_info=True)
        fail(stage, error)
    print_summary(stage, result)
    return result


def without_provenance(value: Any) -> Any:
    """A summary for the terminal: provenance (the whole resolved config) stays in the files."""
    if isinstance(value, dict):
        return {key: without_provenance(item) for key, item in value.items() if key not in ("provenance", "config")}
    if isinstance(value, list):
        return [without_provenance(item) for item in value]
    return value


def print_summary(stage: str, result: Any) -> None:
    if os.environ.get(NESTED_ENV):  # a pipeline step: the pipeline prints the one summary at the end
        print(f"sky-distill {stage}: done")
        return
    if isinstance(result, dict) and "table" in result:
        timings = result.get("timings_s")
        if timings:
            print(f"sky-distill {stage}: stage wall times (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
        print(result["table"])
        return
    text = json.dumps(without_provenance(result), indent=2, default=str)
    lines = text.splitlines()
    if len(lines) > 60:
        text = "\n".join(lines[:60] + [f"... ({len(lines) - 60} more lines in the stage's summary file)"])
    print(f"sky-distill {stage}: done\n{text}")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"sky-distill: error: unknown stage {stage!r}; choose one of: {', '.join(STAGES)}", file=sys.stderr)
        raise SystemExit(2)
    overrides, flags = split_args(rest)
    overrides.append(f"stage={stage}")
    if "-h" in flags or "--help" in flags:
        from sky_distill.stage_help import stage_help

        print(stage_help(stage, STAGES[stage][1], compose_checked(stage, overrides, check=False), CONF_DIR))
        return
    if not any(flag in flags for flag in ("-m", "--multirun", "--hydra-help", "--info", "-i")):
        precheck(stage, overrides)  # also under --cfg: a printed config has been validated

    import hydra

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
    def entry(cfg: Any) -> Any:
        return run_stage(stage, cfg)

    sys.argv = [f"sky-distill-{stage}", *overrides, *flags]
    entry()


if __name__ == "__main__":
    main()
