"""MathVista (AI4Math/MathVista, testmini): `choices` list with the answer as choice *text*;
free-form answers carry `answer_type`, `precision` and `unit`. Accuracy also per `metadata.task`."""

from __future__ import annotations

from evals import judge_prompts
from evals.judge_prompts import OfficialJudge
from evals.metrics import by_group
from evals.sample import Sample
from evals.tasks.base import Benchmark, Row, Split

ANSWER_TYPES = {"integer": "integer", "float": "float", "text": "text", "list": "list"}


def to_sample(row: Row) -> Sample:
    choices = row.get("choices")
    multi_choice = row.text("question_type") == "multi_choice"
    if multi_choice and not choices:
        raise row.error("multiple-choice row without 'choices'")
    precision = row.get("precision")
    image = row.image("decoded_image", required=False) or row.image("image")
    meta = row.get("metadata") or {}
    return Sample(
        id=row.text("pid"),
        benchmark="mathvista",
        images=(image,),
        question=row.text("question"),
        options=tuple(str(c) for c in choices) if multi_choice else None,
        answer=row.text("answer"),
        answer_type="multiple_choice" if multi_choice else row.choice("answer_type", ANSWER_TYPES),
        precision=int(precision) if isinstance(precision, (int, float)) and precision == precision else None,
        integer_match="truncate",  # the official scorer compares str(int(float(prediction)))
        unit=(row.get("unit") or None),
        metadata={"task": meta.get("task"), "category": meta.get("category")},
    )


BENCHMARK = Benchmark(
    name="mathvista",
    hub_id="AI4Math/MathVista",
    splits={"testmini": Split(parts=("testmini",))},
    default_split="testmini",
    to_sample=to_sample,
    metrics=by_group("task"),
    judge_prompt=OfficialJudge(pipeline="lupantech/MathVista:evaluation/extract_answer.py", prompt=judge_prompts.MATHVISTA),
)
