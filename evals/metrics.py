"""Accuracy with confidence intervals, each benchmark's aggregate metrics, and paired comparisons.

Plain proportions get Wilson 95% intervals; metrics over composite units (WeMath problems,
DynaMath seeds' averages) get a seeded bootstrap over those units. Accuracy counts every sample, but
each sample also has an outcome (`status`): an infrastructure failure is an *error*, never a wrong
answer, and paired comparisons use only the samples both runs completed.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Z95 = 1.959963984540054
BOOTSTRAP_REPS = 2000
Status = Literal["correct", "wrong", "truncated", "error"]


def status(*, correct: bool, error: bool, truncated: bool) -> Status:
    """A sample's outcome. `error`: the backend failed (no answer to grade); `truncated`: the graph reported
    the output cut off before its answer, so the rules read none (a judge's correct answer still counts)."""
    if error:
        return "error"
    if correct:
        return "correct"
    return "truncated" if truncated else "wrong"


@dataclass(frozen=True)
class Outcome:
    """What metrics need from one graded sample."""

    id: str
    correct: bool
    metadata: dict[str, Any] = field(default_factory=dict)


class Score(BaseModel):
    """A metric value in [0, 1] with its 95% interval and the number of units it averages."""

    model_config = ConfigDict(frozen=True)

    value: float
    low: float
    high: float
    n: int


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(k: int, n: int) -> Score:
    low, high = wilson(k, n)
    return Score(value=k / n if n else 0.0, low=low, high=high, n=n)


def accuracy(outcomes: Sequence[Outcome]) -> Score:
    return proportion(sum(o.correct for o in outcomes), len(outcomes))


def bootstrap_interval(
    units: Sequence[Any], statistic: Callable[[Sequence[Any]], float], *, seed: int = 0, reps: int = BOOTSTRAP_REPS
) -> tuple[float, float]:
    """Percentile 95% interval of `statistic` over `reps` resamples (with replacement) of `units`."""
    if not units:
        return 0.0, 1.0
    rng = random.Random(seed)
    values = sorted(statistic([units[rng.randrange(len(units))] for _ in units]) for _ in range(reps))
    return values[int(0.025 * (reps - 1))], values[int(math.ceil(0.975 * (reps - 1)))]


MetricsFn = Callable[..., dict[str, Score]]
"""`fn(outcomes, *, seed=0) -> {name: Score}`: a benchmark's aggregate metrics (seed: bootstrap)."""


def by_group(key: str, *, label: str | None = None) -> MetricsFn:
    """Accuracy per value of `metadata[key]` (MathVerse versions, MMMU subjects, MMStar categories)."""

    def metrics(outcomes: Sequence[Outcome], *, seed: int = 0) -> dict[str, Score]:
        groups: dict[str, list[Outcome]] = defaultdict(list)
        for o in outcomes:
            groups[str(o.metadata.get(key, "unknown"))].append(o)
        return {f"{label or key}={name}": accuracy(groups[name]) for name in sorted(groups)}

    return metrics


def combine(*parts: MetricsFn) -> MetricsFn:
    """Several metric functions as one (their results merged)."""

    def metrics(outcomes: Sequence[Outcome], *, seed: int = 0) -> dict[str, Score]:
        merged: dict[str, Score] = {}
        for part in parts:
            merged.update(part(outcomes, seed=seed))
        return merged

    return metrics


# --------------------------------------------------------------------------- WeMath


def _group(outcomes: Sequence[Outcome], key: str) -> dict[Hashable, list[Outcome]]:
    groups: dict[Hashable, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[o.metadata[key]].append(o)
    return groups


def wemath_categories(problem: Sequence[Outcome]) -> dict[str, bool]:
    """WeMath's four-way diagnosis of one composite problem (its `*steps_k` parts and `*steps_multi`).

    IK: a step wrong and the composite wrong; IG: all steps right, composite wrong;
    CM: steps and composite right (strict: all steps, loose: any step);
    RM: composite right though steps fail (strict: any step wrong, loose: all steps wrong).
    """
    steps = [o.correct for o in problem if not str(o.metadata["key"]).endswith("multi")]
    multi = next(o.correct for o in problem if str(o.metadata["key"]).endswith("multi"))
    return {
        "IK": not all(steps) and not multi,
        "IG": all(steps) and not multi,
        "CM_strict": all(steps) and multi,
        "CM_loose": any(steps) and multi,
        "RM_strict": not all(steps) and multi,
        "RM_loose": not any(steps) and multi,
    }


def _wemath_score(problems: Sequence[dict[str, bool]], mode: str) -> float:
    """(N - 0.5*IG - RM - IK) / N, as in We-Math's `update_main_results_df` (N = composite problems)."""
    n = len(problems)
    if n == 0:
        return 0.0
    ig = sum(p["IG"] for p in problems)
    ik = sum(p["IK"] for p in problems)
    rm = sum(p[f"RM_{mode}"] for p in problems)
    return (n - 0.5 * ig - rm - ik) / n


def wemath_metrics(outcomes: Sequence[Outcome], *, seed: int = 0) -> dict[str, Score]:
    """Strict and loose scores over complete composite problems, plus the IK/IG/CM/RM rates.

    A composite problem counts only when all its parts were evaluated (a `--limit` may cut one).
    """
    problems = []
    for parts in _group(outcomes, "problem").values():
        keys = {str(o.metadata["key"]) for o in parts}
        steps = int(next(iter(keys)).split("steps")[0])
        if keys == {f"{steps}steps_{i}" for i in range(1, steps + 1)} | {f"{steps}steps_multi"}:
            problems.append(wemath_categories(parts))
    result = {}
    for mode in ("strict", "loose"):
        low, high = bootstrap_interval(problems, lambda ps, m=mode: _wemath_score(ps, m), seed=seed)
        result[f"score_{mode}"] = Score(value=_wemath_score(problems, mode), low=low, high=high, n=len(problems))
    for name in ("IK", "IG", "CM_strict", "RM_strict"):
        result[name] = proportion(sum(p[name] for p in problems), len(problems))
    return result


# --------------------------------------------------------------------------- DynaMath


def dynamath_metrics(outcomes: Sequence[Outcome], *, seed: int = 0) -> dict[str, Score]:
    """Average-case (mean over seeds of the variants' accuracy) and worst-case (all variants right)."""
    seeds = [[o.correct for o in variants] for variants in _group(outcomes, "seed").values()]

    def average(units: Sequence[list[bool]]) -> float:
        return sum(sum(v) / len(v) for v in units) / len(units) if units else 0.0

    low, high = bootstrap_interval(seeds, average, seed=seed)
    return {
        "average": Score(value=average(seeds), low=low, high=high, n=len(seeds)),
        "worst": proportion(sum(all(v) for v in seeds), len(seeds)),
    }


# --------------------------------------------------------------------------- paired comparison


class Comparison(BaseModel):
    """Run A minus run B on the samples both completed (paired bootstrap interval, McNemar's exact test).

    `dropped` counts the samples left out: errored in either run, or evaluated by one run only.
    """

    model_config = ConfigDict(frozen=True)

    a: str
    b: str
    benchmark: str
    n: int
    dropped: int
    accuracy_a: float
    accuracy_b: float
    difference: float
    low: float
    high: float
    only_a_correct: int
    only_b_correct: int
    p_value: float


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of the discordant pairs at p = 1/2."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def compare(
    a: str, b: str, benchmark: str, correct_a: dict[str, bool | None], correct_b: dict[str, bool | None], *, seed: int = 0
) -> Comparison:
    """Compare two runs (sample id → correct, None for a sample that errored) on the samples both completed."""
    ids = sorted(i for i in set(correct_a) & set(correct_b) if correct_a[i] is not None and correct_b[i] is not None)
    pairs = [(bool(correct_a[i]), bool(correct_b[i])) for i in ids]

    def diff(units: Sequence[tuple[bool, bool]]) -> float:
        return sum(x - y for x, y in units) / len(units) if units else 0.0

    low, high = bootstrap_interval(pairs, diff, seed=seed)
    n = len(pairs)
    only_a = sum(x and not y for x, y in pairs)
    only_b = sum(y and not x for x, y in pairs)
    return Comparison(
        a=a, b=b, benchmark=benchmark, n=n, dropped=len(set(correct_a) | set(correct_b)) - n,
        accuracy_a=sum(x for x, _ in pairs) / n if n else 0.0,
        accuracy_b=sum(y for _, y in pairs) / n if n else 0.0,
        difference=diff(pairs), low=low, high=high,
        only_a_correct=only_a, only_b_correct=only_b, p_value=mcnemar_exact(only_a, only_b),
    )
