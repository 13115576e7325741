"""Aggregate metrics against hand-computed values, intervals and paired tests (plain and clustered)."""

from __future__ import annotations

import math

import pytest

from evals.metrics import (
    Z95,
    Z_POWER80,
    Outcome,
    accuracy,
    bootstrap_interval,
    clustered_stderr,
    compare,
    minimum_detectable_difference,
    sign_flip_p,
    status,
    wilson,
)
from evals.report import markdown, summarize
from evals.store import SampleRecord
from evals.tasks import get_benchmark
from rapid_agent.errors import InputError


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


@pytest.mark.parametrize(("only_a", "only_b", "expected"), [
    (1, 6, 2 * (1 + 7) / 2**7),  # McNemar's exact test: 0.125
    (3, 0, 0.25), (0, 0, 1.0), (3, 3, 1.0),
])
def test_sign_flip_over_single_items_is_mcnemars_exact_test(only_a, only_b, expected):
    assert sign_flip_p([1] * only_a + [-1] * only_b + [0] * 5) == pytest.approx(expected)  # agreeing pairs count 0


@pytest.mark.parametrize(("cluster_differences", "expected"), [
    ([3, 1], 0.5),  # signs (+,+) and (-,-) reach |4|: 2 of 4 equally likely flips
    ([2, 2, -1], 0.5),  # S in {±5, ±3, ±1, ±1}: |S| >= 3 in 4 of 8 flips
    ([4], 1.0),  # one cluster cannot show anything
])
def test_sign_flip_over_clusters_flips_whole_clusters(cluster_differences, expected):
    assert sign_flip_p(cluster_differences) == pytest.approx(expected)


def test_paired_bootstrap_and_mcnemar_for_independent_items():
    a = {str(i): i < 8 for i in range(10)}  # 8/10 right
    b = {str(i): i < 5 for i in range(10)} | {"extra": True}  # 5/10 on the shared ids
    result = compare("A", "B", "bench", a, b, seed=1)
    assert result.n == 10 and result.dropped == 1 and result.accuracy_a == 0.8 and result.accuracy_b == 0.5
    assert result.difference == pytest.approx(0.3)
    assert (result.only_a_correct, result.only_b_correct) == (3, 0)
    assert (result.p_value, result.test, result.cluster_by, result.clusters) == (pytest.approx(0.25), "McNemar exact", None, 10)
    assert 0.0 <= result.low <= 0.3 <= result.high <= 0.6


@pytest.mark.parametrize("cluster_by", [None, "problem"])
def test_identical_runs_differ_by_zero_with_an_interval_as_wide_as_zero_discordance_allows(cluster_by):
    a = {str(i): i % 3 == 0 for i in range(60)}
    ids = {str(i): i // 6 for i in range(60)} if cluster_by else None  # 10 problems of 6 versions
    same = compare("A", "A2", "bench", a, dict(a), cluster_by=cluster_by, cluster_ids=ids)
    units = 10 if cluster_by else 60
    bound = wilson(0, units)[1]  # |A − B| <= the share of discordant units, 0 of `units` seen
    assert (same.difference, same.p_value, same.clusters) == (0.0, 1.0, units)
    assert (same.low, same.high) == (-bound, bound) and bound > 0.05
    z = Z95 + Z_POWER80
    assert same.mdd == pytest.approx(z * z / (units + z * z))  # never 0: no run detects every difference


def _pairs(pattern: list[tuple[bool, bool]], copies: int) -> tuple[dict[str, bool], dict[str, bool]]:
    items = [(f"{k}-{i}", pair) for k in range(copies) for i, pair in enumerate(pattern)]
    return {i: p[0] for i, p in items}, {i: p[1] for i, p in items}


def test_minimum_detectable_difference_shrinks_like_one_over_root_n():
    pattern = [(True, False)] * 15 + [(False, True)] * 10 + [(True, True)] * 13 + [(False, False)] * 12
    mdd = {copies: compare("A", "B", "b", *_pairs(pattern, copies)).mdd for copies in (1, 4, 16)}
    assert mdd[1] / mdd[4] == pytest.approx(2, rel=0.02) and mdd[1] / mdd[16] == pytest.approx(4, rel=0.02)
    se = math.sqrt((25 - 50 * 0.1**2) / 49 / 50)  # Var(A − B) from the discordance (15 − 10 of 50), ddof 1
    assert mdd[1] == pytest.approx((Z95 + Z_POWER80) * se)
    assert minimum_detectable_difference(0.0, 100) == pytest.approx(0.0728, abs=1e-4)  # the floor at 100 units


@pytest.mark.parametrize(("scores", "cluster_ids", "expected"), [
    ([1, 1, 0, 0], ["a", "b", "c", "d"], math.sqrt(1 / 3 / 4)),  # singletons: the plain SE, Var/n (ddof 1)
    ([1, 1, 0, 0], ["a", "a", "b", "b"], math.sqrt(1 / 12 + 1 / 16)),  # + (1/n²) Σ_c Σ_{i≠j} d_i d_j = 1/16
    ([1, 0, 1, 0], ["a", "a", "b", "b"], math.sqrt(1 / 12 - 1 / 16)),  # anti-correlated pairs narrow it
    ([1.0], ["a"], 0.0),
])
def test_clustered_stderr_is_lmms_evals_formula(scores, cluster_ids, expected):
    assert clustered_stderr(scores, cluster_ids) == pytest.approx(expected)


def _clustered_outcomes(correct: list[bool], size: int) -> list[Outcome]:
    """`size` items per problem, each with its problem's outcome (perfectly correlated within a problem)."""
    return [Outcome(id=f"{p}v{v}", correct=ok, metadata={"problem": p}) for p, ok in enumerate(correct) for v in range(size)]


def test_clustered_interval_is_wider_when_items_repeat_a_problem_and_naive_for_singletons():
    problems = [i % 5 < 3 for i in range(80)]  # 48 of 80 problems right (60%)
    repeated = _clustered_outcomes(problems, 5)  # 400 items, 80 independent units
    naive, clustered = accuracy(repeated), accuracy(repeated, cluster_by="problem", seed=0)
    assert naive.value == clustered.value == 0.6 and (naive.n, clustered.n, clustered.clusters) == (400, 400, 80)
    assert clustered.high - clustered.low > 1.8 * (naive.high - naive.low)  # about sqrt(5) wider
    singles = _clustered_outcomes(problems * 5, 1)  # the same 400 outcomes, each its own problem
    plain, single = accuracy(singles), accuracy(singles, cluster_by="problem", seed=0)
    # bootstrap noise with 2000 seeded resamples: a few steps of 1/400 at each end
    assert single.low == pytest.approx(plain.low, abs=0.01) and single.high == pytest.approx(plain.high, abs=0.01)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert (single.low, single.high) == bootstrap_interval([o.correct for o in singles], mean, seed=0)


@pytest.mark.parametrize(("versions", "expected"), [
    ([False] * 3, wilson(0, 8)),  # all wrong
    ([True] * 3, wilson(8, 8)),  # all right
    ([True, True, False], wilson(8 * 2 / 3, 8)),  # every problem 2 of 3: no resample differs either
])
def test_clustered_interval_with_no_spread_is_wilsons_over_the_clusters(versions, expected):
    outcomes_ = [Outcome(id=f"{p}v{v}", correct=ok, metadata={"problem": p}) for p in range(8) for v, ok in enumerate(versions)]
    score = accuracy(outcomes_, cluster_by="problem")
    assert (score.low, score.high) == pytest.approx(expected) and score.high > score.low


def test_clustered_comparison_resamples_problems_and_flips_their_signs():
    # 20 problems x 4 versions; A beats B on every version of 4 problems, B beats A on all of 1: 16 vs 4 items
    a, b = _pairs([(True, False)] * 16 + [(False, True)] * 4 + [(True, True)] * 60, 1)
    ids = {i: int(i.split("-")[1]) // 4 for i in a}
    plain = compare("A", "B", "b", a, b, seed=0)
    clustered = compare("A", "B", "b", a, b, cluster_by="problem", cluster_ids=ids, seed=0)
    assert plain.difference == clustered.difference == pytest.approx(0.15) and clustered.clusters == 20
    assert clustered.p_value == pytest.approx(sign_flip_p([4, 4, 4, 4, -4])) == pytest.approx(0.375)
    assert plain.p_value < 0.05 < clustered.p_value  # McNemar on the 80 items overstates the evidence
    assert clustered.high - clustered.low > plain.high - plain.low and clustered.mdd > plain.mdd
    assert clustered.test == "sign-flip exact over problem clusters"


def _records(run: str, benchmark: str, correct: list[bool], key: str | None) -> list[SampleRecord]:
    return [
        SampleRecord(run=run, mode="decoupled", captioner="cap", reasoner=run, benchmark=benchmark, id=str(i),
                     question="q", gold=["A"], correct=ok, metadata={key: i // 4} if key else {})
        for i, ok in enumerate(correct)
    ]


def test_report_says_which_benchmarks_are_clustered_and_prints_each_comparisons_mdd():
    a, b = [i % 4 != 0 for i in range(40)], [i % 8 < 4 for i in range(40)]  # 10 problems of 4 versions
    records = [*_records("A", "mathverse", a, "problem"), *_records("B", "mathverse", b, "problem"),
               *_records("A", "mmstar", a, None), *_records("B", "mmstar", b, None)]
    summary = summarize(records)
    clustered, plain = (next(c for c in summary.comparisons if c.benchmark == bench) for bench in ("mathverse", "mmstar"))
    assert (clustered.cluster_by, clustered.clusters, plain.cluster_by, plain.clusters) == ("problem", 10, None, 40)
    assert summary.runs["A"].benchmarks["mathverse"].accuracy.clusters == 10
    report = markdown(summary)
    assert "- mathverse: items repeat a problem, so intervals and paired comparisons are clustered by `problem` " \
           "(10 clusters over 40 samples)" in report
    assert "- mmstar: independent items: Wilson intervals, paired bootstrap over samples, McNemar's exact test." in report
    assert "| only A right | only B right | p | test | MDD |" in report
    for c in (clustered, plain):
        assert f"| {c.p_value:.3g} | {c.test} | {100 * c.mdd:.1f} |" in report
    assert clustered.mdd > plain.mdd and clustered.test == "sign-flip exact over problem clusters"


@pytest.mark.parametrize(("outcomes_", "cluster_ids", "message"), [
    ([Outcome(id="1", correct=True, metadata={})], None, "sample '1' has no metadata 'problem'"),
    (None, {"x": 1}, "clustered by 'problem', but sample '1' has no cluster id"),
])
def test_a_missing_cluster_id_is_named(outcomes_, cluster_ids, message):
    with pytest.raises(InputError, match=message):
        if outcomes_ is not None:
            accuracy(outcomes_, cluster_by="problem")
        else:
            compare("A", "B", "b", {"1": True}, {"1": False}, cluster_by="problem", cluster_ids=cluster_ids)


def test_paired_comparison_uses_only_samples_both_runs_completed():
    # None: the sample errored in that run (no answer was graded), so the pair says nothing about either model
    a = {"1": True, "2": None, "3": True, "4": False, "5": True}
    b = {"1": False, "2": True, "3": None, "4": False, "6": True}
    result = compare("A", "B", "bench", a, b)
    assert (result.n, result.dropped) == (2, 4)  # ids 1 and 4 kept; 2 and 3 errored on one side; 5 and 6 one-sided
    assert (result.accuracy_a, result.accuracy_b, result.only_a_correct, result.only_b_correct) == (0.5, 0.0, 1, 0)
    nothing = compare("A", "B", "bench", {"1": None}, {"1": True})
    assert (nothing.n, nothing.dropped, nothing.difference, nothing.p_value) == (0, 1, 0.0, 1.0)
    assert (nothing.low, nothing.high) == (-1.0, 1.0)  # no pair: any difference


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
