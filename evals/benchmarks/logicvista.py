"""LogicVista (lscpku/LogicVista, split `test`): options in the question text; the answer one or
several letters ("A, C", compared as a set); accuracy per `skill`."""

from __future__ import annotations

from evals.benchmarks.base import Benchmark, Row, Split
from evals.metrics import by_group
from evals.sample import Sample


def to_sample(row: Row) -> Sample:
    return Sample(
        id=row.text("id"),
        benchmark="logicvista",
        images=(row.image("image"),),
        question=row.text("question"),
        answer=row.text("answer"),
        answer_type="multiple_choice",
        metadata={"skill": row.get("skill")},
    )


BENCHMARK = Benchmark(
    name="logicvista",
    hub_id="lscpku/LogicVista",
    splits={"test": Split(parts=("test",))},
    default_split="test",
    to_sample=to_sample,
    metrics=by_group("skill"),
)
