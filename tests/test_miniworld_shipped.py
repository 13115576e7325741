"""The shipped miniature-world weights reproduce RAPID's claims through `python -m evals.run` (as the README runs them).

Greedy decoding on the first held-out items of the `miniworld` benchmark, with the margins the full
run cleared on 500 items (docs/miniworld.md); the manifest names the command that made the weights.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rapid_agent.miniworld import MANIFEST, MODELS, WEIGHTS_DIR, model_path
from training.miniworld.report import claims

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        not (WEIGHTS_DIR / MANIFEST).is_file(),
        reason="no miniworld weights ship in this checkout yet (issue 13: the full run did not finish in time)",
    ),
]
ITEMS = 150


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    """The README's main job on more items: both captioners side by side, both reasoners."""
    out = tmp_path_factory.mktemp("shipped") / "all"
    argv = [
        sys.executable, "-m", "evals.run", "--captioner", "miniworld:captioner", "--captioner", "miniworld:captioner-sft",
        "--reasoner", "miniworld:reasoner-small", "--reasoner", "miniworld:reasoner-large", "--mode", "decoupled",
        "--mode", "blind", "--benchmark", "miniworld", "--limit", str(ITEMS), "--prompt", "paper-train",
        "--max-new-tokens", "64", "--caption-max-new-tokens", "64", "--batch-size", "64", "--concurrency", "128",
        "--no-cache", "--no-progress", "--show", "0", "--output-dir", str(out),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=1500, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return claims(out / "summary.json")


def test_weights_ship_with_their_manifest():
    manifest = json.loads((WEIGHTS_DIR / MANIFEST).read_text())
    assert manifest["command"][:3] == ["python", "-m", "training.miniworld"]
    assert "seed" in manifest and "config" in manifest
    total = sum(f.stat().st_size for name in MODELS for f in model_path(name).iterdir())
    assert total < 20 * 2**20


def test_weights_are_those_of_the_current_recipe():
    """`python -m training.miniworld` (defaults) makes what ships: a recipe change must come with new weights."""
    from training.miniworld.pipeline import MiniworldConfig

    manifest = json.loads((WEIGHTS_DIR / MANIFEST).read_text())
    made = {k: v for k, v in manifest["config"].items() if k != "shipped"}  # shipped stages: the same recipe, earlier
    assert made == {k: v for k, v in json.loads(MiniworldConfig(seed=manifest["seed"]).model_dump_json()).items()
                    if k != "shipped"}


def test_perception_matters(found):
    assert found["perception"]["difference"] > 0.2, found["perception"]


def test_vpo_beats_the_sft_captioner_by_ten_points(found):
    assert found["vpo"]["difference"] >= 0.10 and found["vpo"]["low"] > 0, found["vpo"]


def test_larger_reasoner_scores_higher_with_the_same_captions(found):
    assert found["scaling"]["difference"] > 0, found["scaling"]
    assert found["transfer"]["difference"] > 0, found["transfer"]
