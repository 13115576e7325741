"""A short, bounded run of benchmarks/serve_load.py: no run lost, duplicated or hung, with and without faults.

Only correctness is asserted here; the throughput and latency ratios belong to the full benchmark.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"


def test_short_load_and_fault_run(tmp_path):
    out = tmp_path / "load.json"
    command = [sys.executable, str(SCRIPT), "--runs", "40", "--clients", "8", "--latency-s", "0.05",
               "--failure-rate", "0.3", "--call-timeout-s", "10", "--json", str(out)]
    # the call time-out detects the injected hangs; 10 s (200x the latency) also bounds a slow answer on a loaded CPU
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r = json.loads(out.read_text())

    served, faults = r["served"], r["faults"]
    assert served["sent"] == served["completed"] == served["correct"] == 40
    assert served["duplicates"] == 0 and served["missing_items"] == [] and served["hung"] == 0
    assert r["in_process"]["correct"] == 40
    # faults were injected (both kinds) and retried: every run ended with the right answer or a BackendError
    assert faults["injected"].get("error", 0) > 0 and faults["injected"].get("hang", 0) > 0
    assert faults["reasoner_calls"] > 40
    assert faults["ended"] == faults["sent"] == 40 and faults["hung"] == 0
    assert faults["completed"] == faults["correct"] and faults["completed"] + sum(faults["errors"].values()) == 40
    assert set(faults["errors"]) <= {"BackendError"}
    assert faults["server_up_after"] is True
    assert r["failed"] == []
    assert "completed/sent 40/40" in done.stdout and "ratio" in done.stdout
