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
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
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


def console_script(name: str, extra: str) -> str:
    """Path of an installed console script (beside this Python first), or a `BackendError` naming the extra."""
    beside_python = Path(sys.executable).with_name(name)
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if not found:
        raise BackendError(f"the '{name}' CLI is missing; pip install 'rapid-agent[{extra}]'")
    return found


class OpenAIEndpoint:
    """What a loopback server speaking the OpenAI chat API offers: its `base_url` and model `spec`."""

    port: int
    model_name: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def spec(self) -> str:
        """The model spec string for this server (`openai:MODEL@URL`)."""
        return f"openai:{self.model_name}@{self.base_url}"


class ServerProcess(ABC):
    """A server subprocess whose output goes to a log file, stopped by its process id on exit."""

    log_prefix = "server-"

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix=self.log_prefix, suffix=".log", delete=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @abstractmethod
    def start(self) -> ServerProcess:
        """Spawn the server and wait until it serves."""

    def _spawn(self, command: list[str], env: Mapping[str, str], cwd: Path | None = None) -> None:
        self.process = subprocess.Popen(command, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, env=dict(env))

    def _fail(self, exc: BackendError, tail: int = 3000) -> BackendError:
        """Stop the half-started server; the error carries the end of its log."""
        self.stop()
        return BackendError(f"{exc}; log: {self.log_text()[-tail:]}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s; `process.returncode` stays readable."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_text(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LocalOpenAIServer(OpenAIEndpoint, ServerProcess):
    """`transformers serve MODEL` on a free loopback port, stopped by its process id on exit."""

    log_prefix = "transformers-serve-"

    def __init__(
        self, model_path: str | Path, *, startup_timeout_s: float = 600.0, extra_args: Sequence[str] = ()
    ) -> None:
        super().__init__()
        self.model_path = str(model_path)
        self.port = free_port()
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = list(extra_args)  # e.g. ["--continuous-batching"]

    @property
    def model_name(self) -> str:
        """`transformers serve` serves a model under its path."""
        return self.model_path

    def start(self) -> LocalOpenAIServer:
        command = [
            console_script("transformers", "serve"), "serve", self.model_path,
            "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu", *self.extra_args,
        ]
        self._spawn(command, os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"})
        try:
            wait_until_healthy(f"http://127.0.0.1:{self.port}/health", self.startup_timeout_s, self.process)
        except BackendError as exc:
            raise self._fail(exc) from None
        return self
