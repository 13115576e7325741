"""End to end: `python -m training.miniworld --quick` trains the captioner from scratch (SFT, then VPO against
the shipped reasoners), runs the evals on 400 held-out items and reproduces RAPID's claims there.

Each claim is asserted with a margin the quick run clears and a broken training step does not
(measured on 400 items: perception +46.5 [+41.5, +52.0], VPO +31.8 [+26.5, +37.0], scaling +6.0
[+2.0, +10.0], transfer +41.0 [+35.2, +46.8]; with every learning rate x1e-6: -8.0, +0.0, +0.5
[-0.0, +1.2], +0.0). A captioner that did not learn writes captions no better than none, so both
reasoners sit near their blind floor and cannot differ by much; a VPO stage that does not update
leaves the captioner unchanged (a difference of exactly 0). Scaling is the smallest: the quick
captioner never reads bar D after 800 SFT steps (6 of 165 right), which sinks sums for both
reasoners; the larger one leads on differences and comparisons. The full run's figures (500 items,
docs/miniworld.md): scaling +15.2 [+11.6, +18.8].
"""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.miniworld_quick, pytest.mark.timeout(3600)]
LEARNED = 0.35  # final SFT loss below this fraction of the first logged loss
# the least difference (points / 100) each claim shows on the quick run, its 95% interval above 0 too
QUICK_MARGINS = {"perception": 0.25, "vpo": 0.10, "scaling": 0.03, "transfer": 0.10}

# `miniworld_quick_run`: the session's quick run, started in the background at collection
# (rapid_agent.testing.miniworld_pytest)


def test_quick_run_writes_models_report_and_claims(miniworld_quick_run):
    for name in ("captioner", "captioner-sft", "reasoner-small", "reasoner-large"):
        assert (miniworld_quick_run / "models" / name / "model.safetensors").is_file()
    report = (miniworld_quick_run / "miniworld.md").read_text()
    assert "## The claims" in report and (miniworld_quick_run / "miniworld" / "vpo_curves.png").is_file()
    found = json.loads((miniworld_quick_run / "claims.json").read_text())
    assert {"perception", "vpo", "scaling", "transfer"} <= found.keys()
    assert found["vpo"]["n"] == json.loads((miniworld_quick_run / "config.json").read_text())["eval_items"] == 400


@pytest.mark.parametrize("claim", list(QUICK_MARGINS))
def test_quick_run_reproduces_the_claim(miniworld_quick_run, claim):
    found = json.loads((miniworld_quick_run / "claims.json").read_text())[claim]
    assert found["difference"] >= QUICK_MARGINS[claim] and found["low"] > 0, found


def test_quick_run_supervised_stage_learns(miniworld_quick_run):
    history = json.loads((miniworld_quick_run / "models" / "captioner-sft" / "training_log.json").read_text())["log_history"]
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses[-1] < LEARNED * losses[0], losses


def test_quick_run_vpo_trained_through_the_graph_reward(miniworld_quick_run):
    history = json.loads((miniworld_quick_run / "models" / "captioner" / "training_log.json").read_text())["log_history"]
    steps = [h for h in history if "vpo/reward_mean" in h]
    assert len(steps) == json.loads((miniworld_quick_run / "config.json").read_text())["vpo_steps"] > 0
    assert all(0 <= h["vpo/reward_mean"] <= 1 and h["vpo/reasoner_errors"] == 0 for h in steps)


def test_quick_run_trains_the_perception_side_against_the_shipped_reasoners(miniworld_quick_run):
    from rapid_agent.miniworld import model_path

    stages = json.loads((miniworld_quick_run / "stages.json").read_text())
    assert set(stages) == {"captioner-sft", "captioner", "evals"}  # what this run trained, from scratch
    wall = json.loads((miniworld_quick_run / "wall.json").read_text())
    assert wall["from_scratch"] and wall["shipped"] == ["reasoner-large", "reasoner-small"]
    for name in ("reasoner-small", "reasoner-large"):
        for shipped in model_path(name).iterdir():  # every file of the shipped reasoner, byte for byte
            assert (miniworld_quick_run / "models" / name / shipped.name).read_bytes() == shipped.read_bytes()


def test_quick_run_rate_is_held_then_decayed(miniworld_quick_run):
    config = json.loads((miniworld_quick_run / "config.json").read_text())["captioner"][0]
    history = json.loads((miniworld_quick_run / "models" / "captioner-sft" / "training_log.json").read_text())
    first_phase = [h for h in history["log_history"] if "learning_rate" in h]
    first_phase = first_phase[: next((i for i in range(1, len(first_phase))
                                      if first_phase[i]["step"] < first_phase[i - 1]["step"]), len(first_phase))]
    rates = {h["step"]: h["learning_rate"] for h in first_phase}
    stable_end = config["steps"] - round(config["decay_fraction"] * config["steps"])
    held = [rate for step, rate in rates.items() if config["warmup_steps"] < step <= stable_end]
    assert held and all(rate == pytest.approx(config["learning_rate"]) for rate in held)
    assert rates[max(rates)] < 0.2 * config["learning_rate"]  # decayed by the end
