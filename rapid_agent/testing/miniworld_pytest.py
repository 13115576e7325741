"""A pytest plugin: `python -m training.miniworld --quick` run once per session, in the background.

Enable it with `pytest_plugins = ["rapid_agent.testing.miniworld_pytest"]` in a `conftest.py`; tests
marked `miniworld_quick` ask for the `miniworld_quick_run` fixture (the run's output folder). As soon
as collection selects such a test (a bare `pytest`: before collection), the quick run starts as its own
process with one torch thread (the suite keeps the other core: two busy threads on one core slow torch
many times over), so its minutes of training overlap with the rest of the suite; its tests run last
(after the `vllm` ones), so no other test waits for the run mid-suite. When the first of them asks for the run, the rest of the
suite is done: the run is handed every core (its `--threads-file`) for what it has left, and the
fixture waits for it and fails, with the end of the run's log, if it did not succeed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

MARKER = "miniworld_quick"
TIMEOUT_S = 3300  # a hang guard: the quick run takes minutes


class QuickRun:
    """The background `python -m training.miniworld --quick` process and its folder."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="miniworld-quick-")
        self.out = Path(self._tmp.name) / "run"
        self.log = Path(self._tmp.name) / "run.log"
        self.threads = Path(self._tmp.name) / "threads"
        self.threads.write_text("1\n")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "training.miniworld", "--quick", "--out", str(self.out), "--no-progress",
                 "--threads", "1", "--threads-file", str(self.threads)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    def result(self) -> Path:
        """The output folder once the run has succeeded; fails the calling test otherwise. The rest of the
        suite is done by now (these tests run last): the run gets every core for what it has left."""
        self.threads.write_text(f"{os.cpu_count() or 1}\n")
        try:
            code = self.process.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"the quick miniworld run did not finish in {TIMEOUT_S} s:\n{self._tail()}")
        if code != 0:
            pytest.fail(f"the quick miniworld run exited with {code}:\n{self._tail()}")
        return self.out

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._tmp.cleanup()


_KEY = pytest.StashKey[QuickRun]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: uses the session's quick miniworld run (started at collection)")
    if _runs_the_whole_suite(config):  # the run is the suite's long pole: start it before collection (~10 s)
        config.stash[_KEY] = QuickRun()


def _runs_the_whole_suite(config: pytest.Config) -> bool:
    """True for a bare `pytest` (the configured test paths, no -k, a -m that keeps the quick run's tests): its
    selection surely holds the quick run's tests, before they are collected."""
    from _pytest.mark.expression import Expression

    if config.option.collectonly or config.option.keyword or config.args_source != pytest.Config.ArgsSource.TESTPATHS:
        return False
    marks = {"slow", MARKER}
    return not config.option.markexpr or Expression.compile(config.option.markexpr).evaluate(lambda name: name in marks)


@pytest.hookimpl(trylast=True)  # after the vllm plugin's own reordering: these go to the very end
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the tests that wait for the quick run to the end, so the rest of the suite overlaps with it."""
    marked = [item for item in items if item.get_closest_marker(MARKER)]
    items[:] = [item for item in items if not item.get_closest_marker(MARKER)] + marked


def pytest_collection_finish(session: pytest.Session) -> None:
    wanted = not session.config.option.collectonly and any(item.get_closest_marker(MARKER) for item in session.items)
    run = session.config.stash.get(_KEY, None)
    if wanted and run is None:
        session.config.stash[_KEY] = QuickRun()
    elif not wanted and run is not None:  # started early, then deselected (e.g. by a plugin's own selection)
        run.stop()
        del session.config.stash[_KEY]


def pytest_sessionfinish(session: pytest.Session) -> None:
    run = session.config.stash.get(_KEY, None)
    if run is not None:
        run.stop()


@pytest.fixture(scope="session")
def miniworld_quick_run(pytestconfig: pytest.Config) -> Path:
    """The output folder of the session's quick miniworld run (waits for it)."""
    run = pytestconfig.stash.get(_KEY, None) or pytestconfig.stash.setdefault(_KEY, QuickRun())
    return run.result()
