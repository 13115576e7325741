"""MMStar (Lin-Chen/MMStar, split `val`): options inline in the question ("Options: A: ..., B: ..."),
the answer a letter; accuracy per `category` (6 core capabilities)."""

from __future__ import annotations

from evals.benchmarks.base import Benchmark, Row, Split
from evals.metrics import by_group
from evals.sample import Sample


def to_sample(row: Row) -> Sample:
    return Sample(
        id=row.text("index"),
        benchmark="mmstar",
        images=(row.image("image"),),
        question=row.text("question"),
        answer=row.text("answer"),
        answer_type="multiple_choice",
        metadata={"category": row.text("category"), "l2_category": row.get("l2_category")},
    )


BENCHMARK = Benchmark(
    name="mmstar",
    hub_id="Lin-Chen/MMStar",
    splits={"val": Split(parts=("val",))},
    default_split="val",
    to_sample=to_sample,
    metrics=by_group("category"),
)
