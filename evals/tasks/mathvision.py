"""MATH-Vision (MathLLMs/MathVision, `test` / `testmini`): `options` list (empty = free-form), the
answer a letter for multiple choice (letter or option text both count), `<image1>` tags in questions."""

from __future__ import annotations

from evals import judge_prompts
from evals.judge_prompts import OfficialJudge
from evals.metrics import by_group
from evals.sample import Sample
from evals.tasks.base import Benchmark, Row, Split


def to_sample(row: Row) -> Sample:
    options = [str(o) for o in row.get("options") or []]
    image = row.image("decoded_image", required=False) or row.image("image")
    return Sample(
        id=row.text("id"),
        benchmark="mathvision",
        images=(image,),
        question=row.text("question"),
        options=tuple(options) or None,
        answer=row.text("answer"),
        answer_type="multiple_choice" if options else "auto",
        precision=None if options else 2,  # the official is_equal: numeric equality to 2 decimals
        metadata={"subject": row.get("subject"), "level": row.get("level")},
    )


BENCHMARK = Benchmark(
    name="mathvision",
    hub_id="MathLLMs/MathVision",
    splits={"test": Split(parts=("test",)), "testmini": Split(parts=("testmini",))},
    default_split="testmini",
    to_sample=to_sample,
    metrics=by_group("subject"),
    judge_prompt=OfficialJudge(
        pipeline="open-compass/VLMEvalKit:vlmeval/dataset/image_vqa.py (MathVision)", prompt=judge_prompts.MATHVISION,
        note="the MATH-V authors' evaluation/evaluate.py has no LLM step",
    ),
)
