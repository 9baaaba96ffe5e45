"""slurm/serve.sbatch without a cluster: the server command rendered from teacher.serve, and the
script's protocol (Ray head and workers, the server on the head node, its URL written once it
answers, exit once the generation is merged) run by real bash with stand-in srun/scontrol/ray."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

from sky_distill.config import stage_config
from sky_distill.generate.serve import server_command, url_file
from tests.conftest import REPO, compose_config

SERVED = ["experiment=r1_distill_7b", "teacher=deepseek_r1_served"]


def test_the_r1_server_spans_two_nodes_with_tensor_and_pipeline_parallelism(tmp_path):
    teacher = stage_config(compose_config([*SERVED, f"paths.root={tmp_path}"]), "generate")["teacher"]
    command = server_command(teacher)
    assert command[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    pairs = dict(zip(command[3::2], command[4::2]))
    assert pairs["--model"] == "deepseek-ai/DeepSeek-R1" and pairs["--served-model-name"] == "deepseek-ai/DeepSeek-R1"
    assert (pairs["--tensor-parallel-size"], pairs["--pipeline-parallel-size"]) == ("8", "2")
    assert pairs["--distributed-executor-backend"] == "ray" and pairs["--reasoning-parser"] == "deepseek_r1"
    assert pairs["--max-model-len"] == "32768" and "--trust-remote-code" in command
    assert teacher.engine.backend == "openai" and teacher.thought_format == "reasoning_field"


def test_a_layout_that_does_not_fill_the_nodes_is_refused(tmp_path):
    import pytest

    from sky_distill.config import ConfigError

    with pytest.raises(ConfigError, match=r"teacher.serve: .*16 GPUs, but nodes x gpus_per_node = 3 x 8 = 24"):
        stage_config(compose_config([*SERVED, "teacher.serve.nodes=3"]), "generate")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


STAND_IN_SRUN = """\
#!/bin/bash
echo "srun $*" >> "$CALLS"
while [ "${1:-}" != "" ] && [ "${1#-}" != "$1" ]; do
  case "$1" in -w) shift 2 ;; *) shift ;; esac
done
if [[ "$*" == *vllm.entrypoints* ]]; then
  port=$(python -c 'import sys; a = sys.argv[1:]; print(a[a.index("--port") + 1])' "$@")
  exec python -c 'import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"{}")
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()' "$port"
fi
exec sleep 600
"""


def test_serve_sbatch_starts_ray_then_the_server_writes_its_url_and_stops_after_the_merge(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(STAND_IN_SRUN)
    (bin_dir / "scontrol").write_text('#!/bin/bash\nprintf "n1\\nn2\\n"\n')
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    port = free_port()
    overrides = [*SERVED, f"paths.root={tmp_path}", f"teacher.serve.port={port}"]
    environ = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        SKY_DISTILL_REPO=str(REPO),
        SLURM_JOB_ID="77",
        SLURM_JOB_NODELIST="n[1-2]",
        SKY_SERVE_HOST="127.0.0.1",
        SKY_RAY_WAIT_S="0",
        SKY_SERVE_POLL_S="0.2",
        CALLS=str(tmp_path / "calls"),
    )
    process = subprocess.Popen(
        ["bash", str(REPO / "slurm" / "serve.sbatch"), *overrides],
        env=environ,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run_dir = tmp_path / "runs" / "r1_distill_7b"
    teacher = stage_config(compose_config(overrides), "generate")["teacher"]
    url = url_file(run_dir, teacher)
    deadline = time.monotonic() + 120
    while not url.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        assert url.read_text().strip() == f"http://127.0.0.1:{port}/v1"
        assert process.poll() is None  # serving until the generation is complete
        (run_dir / "generate").mkdir(parents=True)
        (run_dir / "generate" / "COMPLETE.json").write_text("{}")
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "generation is complete" in output
    calls = (tmp_path / "calls").read_text().splitlines()
    # the head, the workers and the server start in the background: their calls may log in any order
    head, workers, serving = ([call for call in calls if marker in call] for marker in ("--head", "--address", "RAY_ADDRESS"))
    assert len(calls) >= 3 and len(head) == len(workers) == len(serving) == 1, calls
    assert head[0].startswith("srun --overlap --nodes=1 --ntasks=1 -w n1 ray start --head --port=6379")
    assert workers[0].startswith("srun --overlap --nodes=1 --ntasks=1 --exclude=n1 ray start --address=n1:6379")
    server = shlex.split(serving[0])
    assert server[:8] == ["srun", "--overlap", "--nodes=1", "--ntasks=1", "-w", "n1", "env", "RAY_ADDRESS=n1:6379"]
    assert server[8:] == server_command(teacher)
