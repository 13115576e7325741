"""Start and stop LangGraph's own server (`langgraph dev`) on a loopback port, for tests, benchmarks and demos.

    with LangGraphDevServer("graphs/langgraph.json", env={"RAPID_API_KEYS": "k1"}) as server:
        client = langgraph_sdk.get_client(url=server.url, api_key="k1")

`langgraph dev` moves silently to another port when the requested one is taken, so the real address
is read from its log. It runs without the reloader, makes no outbound call (tracing, analytics and
the version check are off) and is stopped by its process id.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

from rapid_agent.errors import BackendError
from rapid_agent.testing.local_servers import ServerProcess, console_script, free_port, wait_until_healthy

QUIET_ENV = {
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "1",
    "HF_HUB_OFFLINE": "1",
}
_API_LINE = re.compile(r"API:\s*(?:\x1b\[[0-9;]*m)*(http://[\w.\-\[\]:]+)")


class LangGraphDevServer(ServerProcess):
    """`langgraph dev --config CONFIG` on a free loopback port; `env` is added to this process's environment."""

    log_prefix = "langgraph-dev-"

    def __init__(
        self,
        config: str | Path,
        *,
        env: Mapping[str, str] | None = None,
        n_jobs_per_worker: int = 10,
        startup_timeout_s: float = 600.0,  # a hang guard: start-up on a loaded CPU can take minutes
        allow_blocking: bool = False,
    ) -> None:
        super().__init__()
        self.config = Path(config).resolve()
        if not self.config.is_file():
            raise BackendError(f"no LangGraph config at {self.config}")
        self.env = dict(env or {})
        self.n_jobs_per_worker = n_jobs_per_worker
        self.startup_timeout_s = startup_timeout_s
        self.allow_blocking = allow_blocking
        self.url: str | None = None

    def start(self) -> LangGraphDevServer:
        command = [
            console_script("langgraph", "serve"), "dev", "--no-browser", "--no-reload", "--config", str(self.config),
            "--host", "127.0.0.1", "--port", str(free_port()), "--n-jobs-per-worker", str(self.n_jobs_per_worker),
        ]
        if self.allow_blocking:
            command.append("--allow-blocking")
        self._spawn(command, os.environ | QUIET_ENV | self.env, cwd=self.config.parent)
        deadline = time.monotonic() + self.startup_timeout_s
        try:
            self.url = self._announced_url(deadline)
            wait_until_healthy(f"{self.url}/ok", max(1.0, deadline - time.monotonic()), self.process)
        except BackendError as exc:
            raise self._fail(exc) from None
        return self

    def _announced_url(self, deadline: float) -> str:
        while time.monotonic() < deadline:
            if match := _API_LINE.search(self.log_text()):
                return match.group(1)
            if self.process.poll() is not None:
                raise BackendError(f"langgraph dev exited with code {self.process.returncode} before serving")
            time.sleep(0.1)
        raise BackendError(f"langgraph dev announced no API address within {self.startup_timeout_s:.0f}s")
