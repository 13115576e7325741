"""End to end: `python -m training.miniworld --quick` trains every model from scratch and the claims show.

The margins are set against a run with every learning rate scaled by 1e-6 (a broken training step),
which clears none of them (docs/miniworld.md, "Quick mode").
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

QUICK_MARGINS = {"perception": 0.15, "vpo": 0.05, "scaling": 0.0}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("miniworld-quick")
    result = subprocess.run(
        [sys.executable, "-m", "training.miniworld", "--quick", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=3000, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_quick_run_writes_models_report_and_claims(quick_run):
    for name in ("captioner", "captioner-sft", "reasoner-small", "reasoner-large"):
        assert (quick_run / "models" / name / "model.safetensors").is_file()
    report = (quick_run / "miniworld.md").read_text()
    assert "## The claims" in report and (quick_run / "miniworld" / "vpo_curves.png").is_file()
    summary = json.loads((quick_run / "evals" / "all" / "summary.json").read_text())
    assert summary["runs"]["reasoner-small [decoupled] (vpo)"]["benchmarks"]["miniworld"]["accuracy"]["n"] == 100


@pytest.mark.parametrize("claim", sorted(QUICK_MARGINS))
def test_quick_run_shows_each_claim(quick_run, claim):
    found = json.loads((quick_run / "claims.json").read_text())[claim]
    assert found["difference"] > QUICK_MARGINS[claim], found
