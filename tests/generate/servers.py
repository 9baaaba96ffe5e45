"""A real vLLM OpenAI-compatible server on CPU, which tests can kill and restart, and a proxy in
front of it that injects the faults real deployments show (429, 5xx, dropped connections, stalls)."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class VLLMServer:
    """`python -m vllm.entrypoints.openai.api_server` on 127.0.0.1, in its own process group."""

    def __init__(self, model_dir: Path, log_path: Path, *extra: str):
        self.model_dir, self.log_path, self.extra = model_dir, log_path, extra
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 300) -> None:
        command = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--dtype",
            "float32",
            "--max-model-len",
            "512",
            "--enforce-eager",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.extra,
        ]
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.kill()
        raise RuntimeError(f"vLLM server did not come up in {timeout_s} s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL the server and its engine process (the whole group), as a node failure would."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None


class FaultyProxy:
    """Forwards to `upstream`, but answers the first attempt of chosen requests with a fault.

    `plan(body) -> list of faults` gives, per request body, what its successive attempts get
    before one is forwarded: an HTTP status, "drop" (close without answering) or "stall:S"
    (wait S seconds, then forward). A plan longer than the client's retries never succeeds.
    """

    def __init__(self, upstream: str, plan):
        self.upstream = upstream.rstrip("/")
        self.plan = plan
        self.attempts: dict[str, int] = {}
        self.faults: list[str] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                key = hashlib.sha256(body).hexdigest()
                with proxy.lock:
                    attempt = proxy.attempts.get(key, 0)
                    proxy.attempts[key] = attempt + 1
                faults = proxy.plan(json.loads(body))
                fault = faults[attempt] if attempt < len(faults) else None
                if fault is not None:
                    with proxy.lock:
                        proxy.faults.append(str(fault))
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(fault, int):
                    payload = json.dumps({"error": {"message": f"injected {fault}"}}).encode()
                    self.send_response(fault)
                    if fault == 429:
                        self.send_header("retry-after", "0")
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if isinstance(fault, str) and fault.startswith("stall:"):
                    time.sleep(float(fault.split(":")[1]))
                upstream = httpx.post(
                    proxy.upstream + self.path.removeprefix("/v1"),
                    content=body,
                    headers={"content-type": "application/json"},
                    timeout=120,
                )
                try:
                    self.send_response(upstream.status_code)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(upstream.content)))
                    self.end_headers()
                    self.wfile.write(upstream.content)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a stalled attempt

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FaultyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()
