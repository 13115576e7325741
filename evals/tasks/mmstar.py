"""MMStar (Lin-Chen/MMStar, split `val`): options inline in the question ("Options: A: ..., B: ..."),
parsed out for grading; the answer a letter; accuracy per `category` (6 core capabilities)."""

from __future__ import annotations

from evals import judge_prompts
from evals.judge_prompts import OfficialJudge
from evals.metrics import by_group
from evals.sample import Sample
from evals.tasks.base import Benchmark, Row, Split
from evals.tasks.options import MMSTAR, embedded_options


def to_sample(row: Row) -> Sample:
    question, answer = row.text("question"), row.text("answer")
    options = embedded_options(question, MMSTAR, answer)
    return Sample(
        id=row.text("index"),
        benchmark="mmstar",
        images=(row.image("image"),),
        question=question,
        options=options,
        options_in_question=options is not None,
        answer=answer,
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
    judge_prompt=OfficialJudge(
        pipeline="open-compass/VLMEvalKit:vlmeval/dataset/image_mcq.py (MMStar)", prompt=judge_prompts.MCQ,
        note="the MMStar authors' eval/ scores by rules",
    ),
)
