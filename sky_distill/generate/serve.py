"""The vLLM server command of a served teacher (`teacher.serve`), for slurm/serve.sbatch.

    python -m sky_distill.generate.serve [key=value ...]
    python -m sky_distill.generate.serve --wait URL TIMEOUT_S PID

prints shell assignments (the same overrides as every job, so the same config): the server
command as an array, the port, node count, and the files the job coordinates through:
`<run_dir>/serve/<teacher>.url` (written once the server answers; generation jobs wait for it)
and the merged generation's COMPLETE.json (the server stops once it appears). `--wait` returns
once the server at URL lists its models, or fails if process PID ends or TIMEOUT_S passes.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
import urllib.request
from pathlib import Path

from sky_distill.config import ModelConfig


def server_command(model: ModelConfig) -> list[str]:
    """The OpenAI-compatible vLLM server for `model.serve`, in its module form (`vllm serve`
    is the same program; the module also runs under the CPU build, whose console script fails)."""
    serve = model.serve
    if serve is None:
        raise ValueError(f"teacher {model.name!r} has no serve section (teacher.serve)")
    command = [
        "python", "-m", "vllm.entrypoints.openai.api_server",
        "--model", model.path,
        "--served-model-name", model.engine.served_model_name or model.path,
        "--host", "0.0.0.0",
        "--port", str(serve.port),
        "--dtype", serve.dtype,
        "--tensor-parallel-size", str(serve.tensor_parallel_size),
        "--pipeline-parallel-size", str(serve.pipeline_parallel_size),
        "--gpu-memory-utilization", str(serve.gpu_memory_utilization),
    ]  # fmt: skip
    if model.revision:
        command += ["--revision", model.revision]
    if serve.nodes > 1:
        command += ["--distributed-executor-backend", "ray"]
    if serve.max_model_len:
        command += ["--max-model-len", str(serve.max_model_len)]
    if serve.reasoning_parser:
        command += ["--reasoning-parser", serve.reasoning_parser]
    return [*command, *serve.args]


def url_file(run_dir: str | Path, model: ModelConfig) -> Path:
    return Path(run_dir) / "serve" / f"{model.name}.url"


def shell_assignments(model: ModelConfig, run_dir: str | Path) -> str:
    serve = model.serve
    assert serve is not None
    values = {
        "SKY_SERVE_PORT": str(serve.port),
        "SKY_SERVE_NODES": str(serve.nodes),
        "SKY_SERVE_TIMEOUT_S": str(int(serve.startup_timeout_s)),
        "SKY_SERVE_URL_FILE": str(url_file(run_dir, model)),
        "SKY_SERVE_DONE_FILE": str(Path(run_dir) / "generate" / "COMPLETE.json"),
    }
    lines = [f"{key}={shlex.quote(value)}" for key, value in values.items()]
    lines.append("SKY_SERVE_CMD=(" + " ".join(shlex.quote(part) for part in server_command(model)) + ")")
    return "\n".join(lines)


def wait_until_serving(url: str, timeout_s: float, pid: int, poll_s: float = 5.0) -> str | None:
    """None once `url`/models answers; else why not (the server process ended, or the time ran out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return f"the server (pid {pid}) exited before it answered at {url}"
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/models", timeout=5):
                return None
        except OSError:
            time.sleep(poll_s)
    return f"the server did not answer at {url} within {timeout_s:.0f} s (teacher.serve.startup_timeout_s)"


def main(argv: list[str]) -> int:
    if argv[:1] == ["--wait"]:
        url, timeout, pid = argv[1], float(argv[2]), int(argv[3])
        problem = wait_until_serving(url, timeout, pid)
        if problem:
            print(f"sky_distill.generate.serve: error: {problem}", file=sys.stderr)
            return 1
        return 0
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from sky_distill.cli import CONF_DIR
    from sky_distill.config import stage_config

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*argv, "stage=generate"], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        typed = stage_config(cfg, "generate")
    teacher = typed["teacher"]
    if teacher.serve is None:
        print(f"sky_distill.generate.serve: error: teacher {teacher.name!r} has no serve section", file=sys.stderr)
        return 1
    print(shell_assignments(teacher, typed["paths"].run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
