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


def test_quick_run_trains_the_captioner_beside_the_reasoners(miniworld_quick_run):
    wall = json.loads((miniworld_quick_run / "wall.json").read_text())
    stages = json.loads((miniworld_quick_run / "stages.json").read_text())
    assert wall["jobs"] == 2 and wall["from_scratch"]
    assert set(stages) == {"reasoner-small", "reasoner-large", "captioner-sft", "captioner", "evals"}
    # every stage's time lies inside the run's wall clock: only stages that overlapped can sum to more
    assert sum(s["seconds"] for s in stages.values()) > wall["seconds"]
    assert (miniworld_quick_run / "side-lane.log").is_file()


def test_quick_run_rate_is_held_then_decayed(miniworld_quick_run):
    config = json.loads((miniworld_quick_run / "config.json").read_text())["reasoner_small"]
    history = json.loads((miniworld_quick_run / "models" / "reasoner-small" / "training_log.json").read_text())
    rates = {h["step"]: h["learning_rate"] for h in history["log_history"] if "learning_rate" in h}
    stable_end = config["steps"] - round(config["decay_fraction"] * config["steps"])
    held = [rate for step, rate in rates.items() if config["warmup_steps"] < step <= stable_end]
    assert held and all(rate == pytest.approx(config["learning_rate"]) for rate in held)
    assert rates[max(rates)] < 0.2 * config["learning_rate"]  # decayed by the end
