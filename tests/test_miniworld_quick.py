"""End to end: `python -m training.miniworld --quick` trains every model from scratch, runs VPO and the evals.

The quick run is too short for the claims (the captioner starts reading digits after ~2,000 SFT
steps; docs/miniworld.md): these tests check that every stage runs through the project's own CLIs,
that every supervised stage learns (a run with learning rates scaled by 1e-6 fails this), and that
the report and claims are produced. The claims themselves are asserted on the shipped weights
(tests/test_miniworld_shipped.py).
"""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.miniworld_quick, pytest.mark.timeout(3600)]
LEARNED = 0.35  # final SFT loss below this fraction of the first logged loss

# `miniworld_quick_run`: the session's quick run, started in the background at collection
# (rapid_agent.testing.miniworld_pytest)


def test_quick_run_writes_models_report_and_claims(miniworld_quick_run):
    for name in ("captioner", "captioner-sft", "reasoner-small", "reasoner-large"):
        assert (miniworld_quick_run / "models" / name / "model.safetensors").is_file()
    report = (miniworld_quick_run / "miniworld.md").read_text()
    assert "## The claims" in report and (miniworld_quick_run / "miniworld" / "vpo_curves.png").is_file()
    found = json.loads((miniworld_quick_run / "claims.json").read_text())
    assert {"perception", "vpo", "scaling", "transfer"} <= found.keys()
    assert found["vpo"]["n"] == 100


@pytest.mark.parametrize("name", ["reasoner-small", "reasoner-large", "captioner-sft"])
def test_quick_run_supervised_stages_learn(miniworld_quick_run, name):
    history = json.loads((miniworld_quick_run / "models" / name / "training_log.json").read_text())["log_history"]
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses[-1] < LEARNED * losses[0], losses


def test_quick_run_vpo_trained_through_the_graph_reward(miniworld_quick_run):
    history = json.loads((miniworld_quick_run / "models" / "captioner" / "training_log.json").read_text())["log_history"]
    steps = [h for h in history if "vpo/reward_mean" in h]
    assert len(steps) == 30
    assert all(0 <= h["vpo/reward_mean"] <= 1 and h["vpo/reasoner_errors"] == 0 for h in steps)
