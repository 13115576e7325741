"""Accuracy with confidence intervals, each benchmark's aggregate metrics, and paired comparisons.

Plain proportions get Wilson 95% intervals; metrics over composite units (WeMath problems,
DynaMath seeds' averages) get a seeded bootstrap over those units. Accuracy counts every sample, but
each sample also has an outcome (`status`): an infrastructure failure is an *error*, never a wrong
answer, and paired comparisons use only the samples both runs completed.

Items that repeat one problem (MathVerse versions, DynaMath variants, WeMath parts) are not
independent: where a benchmark names a cluster key (`Benchmark.cluster_by`), accuracy intervals and
paired comparisons resample whole clusters (a cluster bootstrap), the paired test flips the sign of
whole clusters' differences, and standard errors are clustered as lmms-eval's `clustered_stderr`.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from rapid_agent.errors import InputError

Z95 = 1.959963984540054  # z_{1 - 0.05/2}
Z_POWER80 = 0.8416212335729143  # z_{0.80}: the power at which a minimum detectable difference is quoted
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
    """A metric value in [0, 1] with its 95% interval and the number of units it averages.

    `clusters`: how many independent clusters the interval resampled (None: the `n` units themselves).
    """

    model_config = ConfigDict(frozen=True)

    value: float
    low: float
    high: float
    n: int
    clusters: int | None = None


def wilson(k: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (k may be a share times n: n units, k/n observed)."""
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


def accuracy(outcomes: Sequence[Outcome], *, cluster_by: str | None = None, seed: int = 0) -> Score:
    """Share of correct outcomes: a Wilson interval for independent items, else a cluster bootstrap over
    `metadata[cluster_by]` (whole clusters resampled; the statistic is correct items / items resampled).

    Where every cluster has the same share (all right, all wrong), no resample differs and the bootstrap
    shows no spread: the interval is then Wilson's with the clusters as the units.
    """
    k, n = sum(o.correct for o in outcomes), len(outcomes)
    if cluster_by is None:
        return proportion(k, n)
    units = [(sum(c), len(c)) for c in clusters([(cluster_of(o, cluster_by), o.correct) for o in outcomes])]
    value = k / n if n else 0.0
    low, high = bootstrap_interval(units, lambda us: sum(u[0] for u in us) / sum(u[1] for u in us), seed=seed)
    if low == high:
        low, high = wilson(value * len(units), len(units))
    return Score(value=value, low=low, high=high, n=n, clusters=len(units))


def cluster_of(outcome: Outcome, cluster_by: str) -> Hashable:
    """The cluster of an outcome: its `metadata[cluster_by]` (the problem it repeats)."""
    value = outcome.metadata.get(cluster_by)
    if value is None:
        raise InputError(f"sample {outcome.id!r} has no metadata {cluster_by!r}, its benchmark's cluster key")
    return value


def clusters(items: Sequence[tuple[Hashable, Any]]) -> list[list[Any]]:
    """The values of `(cluster, value)` pairs grouped by cluster, clusters in first-seen order."""
    groups: dict[Hashable, list[Any]] = {}
    for cluster, value in items:
        groups.setdefault(cluster, []).append(value)
    return list(groups.values())


def clustered_stderr(scores: Sequence[float], cluster_ids: Sequence[Hashable]) -> float:
    """Standard error of the mean of `scores` where items sharing a cluster id are correlated.

    SE² = Var(s)/n + (1/n²) Σ_c Σ_{i≠j in c} (s_i − s̄)(s_j − s̄): Eq. 4 of Miller, "Adding Error Bars to
    Evals" (arXiv 2411.00640), as lmms-eval computes it (`lmms_eval/api/metrics.py::clustered_stderr`,
    Var with ddof 1, no finite-cluster correction). Singleton clusters give the plain SE exactly.
    """
    n = len(scores)
    if n != len(cluster_ids):
        raise InputError(f"{n} scores but {len(cluster_ids)} cluster ids")
    if n < 2:
        return 0.0
    mean = sum(scores) / n
    plain = sum((s - mean) ** 2 for s in scores) / (n - 1) / n
    cross = 0.0
    for group in clusters([(c, s - mean) for c, s in zip(cluster_ids, scores, strict=True)]):
        cross += sum(group) ** 2 - sum(d * d for d in group)  # Σ_{i≠j} d_i d_j
    return math.sqrt(max(0.0, plain + cross / (n * n)))


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
    """Run A minus run B on the samples both completed.

    The interval is a paired (cluster) bootstrap; `p_value` is McNemar's exact test for independent
    items, and for clustered items (`cluster_by`) an exact sign-flip test over the clusters' summed
    differences (`test` names which). `mdd`: the smallest difference this comparison could detect
    (`minimum_detectable_difference`). `dropped` counts the samples left out: errored in either run,
    or evaluated by one run only.
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
    test: str
    cluster_by: str | None
    clusters: int
    mdd: float


def sign_flip_p(differences: Sequence[int]) -> float:
    """Two-sided exact sign-flip test that paired differences centre on 0.

    Each entry is one cluster's summed A − B difference; under the null each keeps or flips its sign
    with probability 1/2, independently. The p-value is P(|Σ ±d_c| ≥ |Σ d_c|), computed exactly by
    convolving one binomial per distinct |d_c|. With one item per cluster (d in {−1, 0, 1}) this is
    McNemar's exact test on the discordant pairs.
    """
    observed = abs(sum(differences))
    dist, total = np.ones(1), 0  # dist[j] = P(S = j − total)
    for size, count in Counter(abs(d) for d in differences if d).items():
        spread = np.zeros(2 * size * count + 1)
        spread[:: 2 * size] = [math.comb(count, i) / 2**count for i in range(count + 1)]
        dist, total = np.convolve(dist, spread), total + size * count
    sums = np.arange(len(dist)) - total
    return min(1.0, float(dist[np.abs(sums) >= observed].sum()))


def minimum_detectable_difference(se: float, units: int) -> float:
    """Smallest true difference detected with 80% power by a two-sided test at alpha 0.05:
    (z_{0.975} + z_{0.80}) · SE(difference), as lmms-eval's `power_analysis` minimum detectable effect.

    A difference δ needs at least a share δ of discordant pairs, so its SE is at least sqrt(δ(1 − δ)/units);
    the MDD is therefore never below z²/(units + z²) (z = z_{0.975} + z_{0.80}), the value that bound
    gives. It holds where the run shows little or no discordance (identical runs: SE 0).
    """
    z = Z95 + Z_POWER80
    return max(z * se, z * z / (units + z * z))


def compare(
    a: str, b: str, benchmark: str, correct_a: dict[str, bool | None], correct_b: dict[str, bool | None], *,
    cluster_by: str | None = None, cluster_ids: Mapping[str, Hashable] | None = None, seed: int = 0,
) -> Comparison:
    """Compare two runs (sample id → correct, None for a sample that errored) on the samples both completed.

    With `cluster_by`, `cluster_ids` maps each sample id to its cluster (`cluster_of`): the bootstrap
    resamples whole clusters of pairs and the test flips whole clusters (McNemar's assumes independent pairs).
    """
    ids = sorted(i for i in set(correct_a) & set(correct_b) if correct_a[i] is not None and correct_b[i] is not None)
    owners: list[Hashable] = list(ids)  # each sample its own cluster, unless clustered
    if cluster_by is not None:
        known = cluster_ids or {}
        missing = [i for i in ids if i not in known]
        if missing:
            raise InputError(f"{benchmark}: clustered by {cluster_by!r}, but sample {missing[0]!r} has no cluster id")
        owners = [known[i] for i in ids]
    diffs = [int(bool(correct_a[i])) - int(bool(correct_b[i])) for i in ids]
    units = [(sum(c), len(c)) for c in clusters(list(zip(owners, diffs, strict=True)))]
    n, k = len(ids), len(units)

    def diff(us: Sequence[tuple[int, int]]) -> float:
        return sum(u[0] for u in us) / sum(u[1] for u in us) if us else 0.0

    low, high = bootstrap_interval(units, diff, seed=seed)
    if low == high or not units:  # every cluster alike (identical runs), or none: no spread to read, so Newcombe's
        # square-and-add of the Wilson intervals of the two discordant shares, clusters as the units
        shares = [diffs.count(side) / n if n else 0.0 for side in (1, -1)]
        (low_a, high_a), (low_b, high_b) = (wilson(share * k, k) for share in shares)
        low = diff(units) - math.hypot(shares[0] - low_a, high_b - shares[1])
        high = diff(units) + math.hypot(high_a - shares[0], shares[1] - low_b)
    return Comparison(
        a=a, b=b, benchmark=benchmark, n=n, dropped=len(set(correct_a) | set(correct_b)) - n,
        accuracy_a=sum(bool(correct_a[i]) for i in ids) / n if n else 0.0,
        accuracy_b=sum(bool(correct_b[i]) for i in ids) / n if n else 0.0,
        difference=diff(units), low=low, high=high,
        only_a_correct=diffs.count(1), only_b_correct=diffs.count(-1),
        p_value=sign_flip_p([u[0] for u in units]),
        test="McNemar exact" if cluster_by is None else f"sign-flip exact over {cluster_by} clusters",
        cluster_by=cluster_by, clusters=k, mdd=minimum_detectable_difference(clustered_stderr(diffs, owners), k),
    )
