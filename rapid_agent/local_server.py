"""Start and stop a real local OpenAI-compatible server (`transformers serve`) for tests and benchmarks.

    with LocalOpenAIServer(model_path) as server:
        reasoner = resolve(server.spec, "reasoner")   # "openai:<path>@http://127.0.0.1:PORT/v1"

It speaks the same protocol as `vllm serve`, so code tested against it works against vLLM.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from rapid_agent.errors import BackendError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 200; raise `BackendError` on timeout or if `process` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BackendError(f"server process exited with code {process.returncode} before {url} was healthy")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise BackendError(f"{url} not healthy after {timeout_s:.0f}s")


def _transformers_cli() -> str:
    beside_python = Path(sys.executable).with_name("transformers")
    found = str(beside_python) if beside_python.exists() else shutil.which("transformers")
    if not found:
        raise BackendError("the 'transformers' CLI is missing; pip install 'rapid-agent[serve]'")
    return found


class LocalOpenAIServer:
    """`transformers serve MODEL` on a free loopback port, stopped by its process id on exit."""

    def __init__(
        self, model_path: str | Path, *, startup_timeout_s: float = 120.0, extra_args: Sequence[str] = ()
    ) -> None:
        self.model_path = str(model_path)
        self.port = free_port()
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = list(extra_args)  # e.g. ["--continuous-batching"]
        self.process: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="transformers-serve-", suffix=".log", delete=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def spec(self) -> str:
        """The model spec string for this server (`openai:MODEL@URL`)."""
        return f"openai:{self.model_path}@{self.base_url}"

    def start(self) -> LocalOpenAIServer:
        command = [
            _transformers_cli(), "serve", self.model_path,
            "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu", *self.extra_args,
        ]
        env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_until_healthy(f"http://127.0.0.1:{self.port}/health", self.startup_timeout_s, self.process)
        except BackendError as exc:
            self.stop()
            raise BackendError(f"{exc}; log: {self.log_text()[-2000:]}") from None
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_text(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def __enter__(self) -> LocalOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
