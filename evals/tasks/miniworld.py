"""The miniature world's held-out bar charts (`rapid_agent.miniworld`), drawn by code: no download.

Test scenes never occur in training (the world splits scenes by a hash of their values); five
question families (value, tallest, shortest, difference, sum) in turn, so `--limit` keeps them balanced.
"""

from __future__ import annotations

import functools

from evals.metrics import by_group
from evals.sample import Sample
from evals.tasks.base import Benchmark, Row, Split
from rapid_agent.miniworld import world

ITEMS = 1000


@functools.cache
def _rows() -> tuple[dict, ...]:
    return tuple(world.rows("test", ITEMS))


def generate(split: str) -> list[dict]:
    return list(_rows())


def to_sample(row: Row) -> Sample:
    options = row.get("options")
    return Sample(
        id=row.text("id"),
        benchmark="miniworld",
        images=(row.image("image"),),
        question=row.text("question"),
        options=tuple(options) if options else None,
        answer=row.text("answer"),
        answer_type=row.text("answer_type"),
        metadata={"family": row.text("family"), "values": list(row.get("values"))},
    )


BENCHMARK = Benchmark(
    name="miniworld",
    splits={"test": Split(parts=("test",))},
    default_split="test",
    to_sample=to_sample,
    metrics=by_group("family"),
    generate=generate,
)
