"""The benchmark registry: one small declarative loader module per benchmark, lmms-eval's "task" (see `base.Benchmark`)."""

from __future__ import annotations

from evals.tasks import (
    bundled,
    dynamath,
    logicvista,
    mathverse,
    mathvision,
    mathvista,
    miniworld,
    mmmu,
    mmstar,
    wemath,
)
from evals.tasks.base import Benchmark, Row, Split
from rapid_agent.errors import ConfigError

BENCHMARKS: dict[str, Benchmark] = {
    m.BENCHMARK.name: m.BENCHMARK
    for m in (bundled, mathvista, mathverse, mathvision, mmmu, mmstar, wemath, logicvista, dynamath, miniworld)
}


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name.strip().lower()]
    except KeyError:
        raise ConfigError(f"unknown benchmark {name!r}; known benchmarks: {sorted(BENCHMARKS)}") from None


__all__ = ["BENCHMARKS", "Benchmark", "Row", "Split", "get_benchmark"]
