"""Aggregate metrics against hand-computed values, intervals and paired tests."""

from __future__ import annotations

import pytest

from evals.metrics import Outcome, accuracy, bootstrap_interval, compare, mcnemar_exact, status, wilson
from evals.tasks import get_benchmark


def outcomes(spec: list[tuple[str, bool, dict]]) -> list[Outcome]:
    return [Outcome(id=i, correct=c, metadata=m) for i, c, m in spec]


def test_wilson_interval_matches_the_textbook_value():
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9434, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    score = accuracy(outcomes([("a", True, {}), ("b", False, {}), ("c", True, {}), ("d", True, {})]))
    assert (score.value, score.n) == (0.75, 4) and score.low < 0.75 < score.high


def test_mathverse_accuracy_per_problem_version():
    data = outcomes([
        ("1", True, {"version": "Text Dominant"}), ("2", False, {"version": "Text Dominant"}),
        ("3", True, {"version": "Vision Only"}), ("4", True, {"version": "Vision Only"}),
        ("5", False, {"version": "Vision Only"}),
    ])
    metrics = get_benchmark("mathverse").metrics(data)
    assert set(metrics) == {"version=Text Dominant", "version=Vision Only"}
    assert metrics["version=Text Dominant"].value == 0.5 and metrics["version=Text Dominant"].n == 2
    assert metrics["version=Vision Only"].value == pytest.approx(2 / 3) and metrics["version=Vision Only"].n == 3


def test_mmmu_accuracy_per_subject_and_domain():
    data = outcomes([
        ("validation_Math_1", True, {"subject": "Math", "domain": "Science"}),
        ("validation_Math_2", False, {"subject": "Math", "domain": "Science"}),
        ("validation_Physics_1", False, {"subject": "Physics", "domain": "Science"}),
        ("validation_Art_1", True, {"subject": "Art", "domain": "Art and Design"}),
    ])
    metrics = get_benchmark("mmmu").metrics(data)
    assert metrics["subject=Math"].value == 0.5
    assert metrics["subject=Physics"].value == 0.0
    assert metrics["subject=Art"].value == 1.0
    assert metrics["domain=Science"].value == pytest.approx(1 / 3) and metrics["domain=Science"].n == 3
    assert metrics["domain=Art and Design"].value == 1.0


def test_mmstar_accuracy_per_category():
    data = outcomes([
        ("0", True, {"category": "math"}), ("1", True, {"category": "math"}), ("2", False, {"category": "math"}),
        ("3", False, {"category": "coarse perception"}),
    ])
    metrics = get_benchmark("mmstar").metrics(data)
    assert metrics == {
        "category=coarse perception": accuracy(data[3:]),
        "category=math": accuracy(data[:3]),
    }
    assert metrics["category=math"].value == pytest.approx(2 / 3)


def _wemath(problem: str, steps: list[bool], multi: bool | None) -> list[tuple[str, bool, dict]]:
    n = len(steps)
    rows = [(f"{problem}/{n}steps_{i}", ok, {"problem": problem, "key": f"{n}steps_{i}"}) for i, ok in enumerate(steps, 1)]
    if multi is not None:
        rows.append((f"{problem}/{n}steps_multi", multi, {"problem": problem, "key": f"{n}steps_multi"}))
    return rows


def test_wemath_strict_and_loose_scores_over_composite_problems():
    data = outcomes(
        _wemath("P1", [True, True], True)  # complete mastery
        + _wemath("P2", [True, False], True)  # rote memorisation (strict only: a step is right)
        + _wemath("P3", [False, False], True)  # rote memorisation (strict and loose)
        + _wemath("P4", [True, True, True], False)  # inadequate generalisation
        + _wemath("P5", [True, False, False], False)  # insufficient knowledge
        + _wemath("P6", [True, True], None)  # incomplete (cut by --limit): not counted
    )
    metrics = get_benchmark("wemath").metrics(data)
    # N = 5, IG = 1, IK = 1, RM strict = 2, RM loose = 1
    assert metrics["score_strict"].value == pytest.approx((5 - 0.5 * 1 - 2 - 1) / 5)  # 0.3
    assert metrics["score_loose"].value == pytest.approx((5 - 0.5 * 1 - 1 - 1) / 5)  # 0.5
    assert metrics["score_strict"].n == 5
    assert metrics["IK"].value == 0.2 and metrics["IG"].value == 0.2
    assert metrics["CM_strict"].value == 0.2 and metrics["RM_strict"].value == 0.4
    assert metrics["score_strict"].low <= 0.3 <= metrics["score_strict"].high
    assert get_benchmark("wemath").headline == ("score_strict", "score_loose")


def test_dynamath_average_and_worst_case_over_seeds():
    data = outcomes([
        ("1@v1", True, {"seed": "1"}), ("1@v2", True, {"seed": "1"}),
        ("2@v1", True, {"seed": "2"}), ("2@v2", False, {"seed": "2"}),
        ("3@v1", False, {"seed": "3"}), ("3@v2", False, {"seed": "3"}),
        ("4@v1", True, {"seed": "4"}), ("4@v2", True, {"seed": "4"}), ("4@v3", True, {"seed": "4"}),
    ])
    metrics = get_benchmark("dynamath").metrics(data)
    assert metrics["average"].value == pytest.approx((1 + 0.5 + 0 + 1) / 4)  # 0.625, not 6/9 per row
    assert metrics["worst"].value == 0.5 and metrics["worst"].n == 4  # seeds 1 and 4 right in every variant


def test_mcnemar_exact_and_paired_bootstrap():
    assert mcnemar_exact(1, 6) == pytest.approx(2 * (1 + 7) / 2**7)  # 0.125
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0
    a = {str(i): i < 8 for i in range(10)}  # 8/10 right
    b = {str(i): i < 5 for i in range(10)} | {"extra": True}  # 5/10 on the shared ids
    result = compare("A", "B", "bench", a, b, seed=1)
    assert result.n == 10 and result.dropped == 1 and result.accuracy_a == 0.8 and result.accuracy_b == 0.5
    assert result.difference == pytest.approx(0.3)
    assert (result.only_a_correct, result.only_b_correct) == (3, 0)
    assert result.p_value == pytest.approx(0.25)
    assert 0.0 <= result.low <= 0.3 <= result.high <= 0.6
    same = compare("A", "A2", "bench", a, dict(a))
    assert (same.difference, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_comparison_uses_only_samples_both_runs_completed():
    # None: the sample errored in that run (no answer was graded), so the pair says nothing about either model
    a = {"1": True, "2": None, "3": True, "4": False, "5": True}
    b = {"1": False, "2": True, "3": None, "4": False, "6": True}
    result = compare("A", "B", "bench", a, b)
    assert (result.n, result.dropped) == (2, 4)  # ids 1 and 4 kept; 2 and 3 errored on one side; 5 and 6 one-sided
    assert (result.accuracy_a, result.accuracy_b, result.only_a_correct, result.only_b_correct) == (0.5, 0.0, 1, 0)
    nothing = compare("A", "B", "bench", {"1": None}, {"1": True})
    assert (nothing.n, nothing.dropped, nothing.difference, nothing.p_value) == (0, 1, 0.0, 1.0)


@pytest.mark.parametrize(("correct", "error", "truncated", "expected"), [
    (True, False, False, "correct"), (False, False, False, "wrong"),
    (False, True, False, "error"), (False, True, True, "error"),  # an infrastructure failure is never "wrong"
    (False, False, True, "truncated"),  # cut off by the token limit before a correct answer
    (True, False, True, "correct"),  # a correct answer given before the cut still counts
])
def test_each_sample_has_one_outcome(correct, error, truncated, expected):
    assert status(correct=correct, error=error, truncated=truncated) == expected


def test_bootstrap_interval_is_seeded():
    units = [1, 0, 1, 1, 0, 1, 0, 1]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert bootstrap_interval(units, mean, seed=3) == bootstrap_interval(units, mean, seed=3)
    low, high = bootstrap_interval(units, mean, seed=3)
    assert low < 5 / 8 < high
