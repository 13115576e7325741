"""A short, bounded run of benchmarks/serve_load.py: no run lost, duplicated or hung, with and without faults;
and the pieces it reads the server with (its log's run timings, the one-run-at-a-time notice).

Only correctness is asserted here; the throughput and latency ratios belong to the full benchmark.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rapid_agent.serving.process import concurrency_notice

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"
RUNS = 24  # three rounds of 8 clients; at a 30% fault rate both kinds are injected (they alternate)


def load_benchmark():
    spec = importlib.util.spec_from_file_location("serve_load", SCRIPT)
    module = sys.modules.setdefault("serve_load", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)  # registered first: its dataclasses look their module up
    return module


def test_run_timings_are_read_from_the_server_log():
    """The log lines of `langgraph dev` (colours included) give each finished run's queue wait and execution."""
    line = ("\x1b[2m2026-12-05T22:01:08Z\x1b[0m [info] \x1b[1mBackground run succeeded\x1b[0m "
            "\x1b[36mrun_exec_ms\x1b[0m=\x1b[35m{exec}\x1b[0m run_id=x \x1b[36mrun_wait_time_ms\x1b[0m=\x1b[35m{wait}\x1b[0m\n")
    log = "".join(line.format(exec=e, wait=w) for e, w in [(2000, 900), (2100, 950), (2050, 980)])
    log += "[info] Starting background run run_queue_ms=5\n"  # not a finished run
    assert load_benchmark().run_timings(log) == {"queue_wait_s": 0.95, "exec_s": 2.05}
    assert load_benchmark().run_timings("no runs here") == {"queue_wait_s": None, "exec_s": None}


@pytest.mark.parametrize(
    ("env", "says"),
    [({"N_JOBS_PER_WORKER": "1"}, True), ({"N_JOBS_PER_WORKER": "20"}, False), ({}, False)],
    ids=["langgraph-dev-default", "flag-given", "not-a-server"],
)
def test_a_server_running_one_run_at_a_time_says_so(env, says):
    notice = concurrency_notice(env)
    assert (notice is not None) == says
    assert notice is None or "--n-jobs-per-worker" in notice


@pytest.mark.slow
def test_short_load_and_fault_run(tmp_path):
    out = tmp_path / "load.json"
    command = [sys.executable, str(SCRIPT), "--runs", str(RUNS), "--clients", "8", "--latency-s", "0.05",
               "--failure-rate", "0.3", "--call-timeout-s", "10", "--one-job-runs", "4", "--json", str(out)]
    # the call time-out detects the injected hangs; 10 s (200x the latency) also bounds a slow answer on a loaded CPU
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r = json.loads(out.read_text())

    served, faults = r["served"], r["faults"]
    assert served["sent"] == served["completed"] == served["correct"] == RUNS
    assert served["duplicates"] == 0 and served["missing_items"] == [] and served["hung"] == 0
    assert r["in_process"]["correct"] == RUNS
    # faults were injected (both kinds) and retried: every run ended with the right answer or a BackendError
    assert faults["injected"].get("error", 0) > 0 and faults["injected"].get("hang", 0) > 0
    assert faults["reasoner_calls"] > RUNS
    assert faults["ended"] == faults["sent"] == RUNS and faults["hung"] == 0
    assert faults["completed"] == faults["correct"] and faults["completed"] + sum(faults["errors"].values()) == RUNS
    assert set(faults["errors"]) <= {"BackendError"}
    assert faults["server_up_after"] is True
    assert r["failed"] == []
    assert r["served"]["queue_wait_s"] is not None and r["one_job"]["completed"] == 4
    assert f"completed/sent {RUNS}/{RUNS}" in done.stdout and "ratio" in done.stdout
