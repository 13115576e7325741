"""The miniature world's held-out bar charts (`rapid_agent.miniworld`), drawn by code: no download.

Test scenes never occur in training (the world splits scenes by a hash of their values); five
question families (value, tallest, shortest, difference, sum) in turn, so `--limit` keeps them balanced.
The world knows every value a question needs, so a caption's share of an error is known exactly
(`caption_holds`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from evals.metrics import by_group
from evals.sample import Sample
from evals.tasks.base import Benchmark, Row, Split
from rapid_agent.miniworld import world

ITEMS = 1000
_STATED = re.compile(re.escape(world.bar_phrase("@")).replace("@", f"([{world.LABELS}])") + r"(-?\d+)")
"""A bar's value as a description states it (`bar A: 7`)."""


@functools.cache
def _rows() -> tuple[dict, ...]:
    return tuple(world.rows("test", ITEMS))


@functools.cache
def _tasks() -> dict[str, world.Task]:
    return {task.id: task for task in world.tasks("test", ITEMS)}


def generate(split: str) -> list[dict]:
    return list(_rows())


def caption_holds(sample_id: str, metadata: Mapping[str, Any], captions: Sequence[str]) -> bool | None:
    """Whether `captions` state, right, every bar value the question needs: the bars it names (value,
    difference), else all (tallest, shortest, sum). None for an item this world did not draw."""
    task = _tasks().get(sample_id)
    if task is None or list(task.scene.values) != list(metadata.get("values") or ()):
        return None
    stated: dict[str, set[int]] = {}
    for caption in captions:
        for label, value in _STATED.findall(caption):
            stated.setdefault(label, set()).add(int(value))
    return all(stated.get(label) == {task.scene.value(label)} for label in task.asked or task.scene.labels)


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
    caption_holds=caption_holds,
)
