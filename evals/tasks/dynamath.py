"""DynaMath (DynaMath/DynaMath_Sample): 501 seed questions, each in 10 generated variants, one
split per variant (`sample_variant1` .. `sample_variant10`; split `all` loads the ten).

`ground_truth` is the gold; `answer_type` is `multiple choice` (letter, options in the question),
`float` (correct within 1e-3) or `free-form`. Metrics: average-case and worst-case accuracy (a seed
counts only when every evaluated variant is right).
"""

from __future__ import annotations

from evals import judge_prompts
from evals.judge_prompts import OfficialJudge
from evals.metrics import dynamath_metrics
from evals.sample import Sample
from evals.tasks.base import Benchmark, Row, Split

VARIANTS = tuple(f"sample_variant{i}" for i in range(1, 11))
ANSWER_TYPES = {"multiple choice": "multiple_choice", "float": "float", "free-form": "auto"}


def to_sample(row: Row) -> Sample:
    seed = row.text("id")
    variant = int(row.part.removeprefix("sample_variant"))
    image = row.image("decoded_image", required=False) or row.image("image")
    answer_type = row.choice("answer_type", ANSWER_TYPES)
    return Sample(
        id=f"{seed}@v{variant}",
        benchmark="dynamath",
        images=(image,),
        question=row.text("question"),
        answer=row.text("ground_truth"),
        answer_type=answer_type,
        tolerance=1e-3 if answer_type == "float" else None,  # |pred - gold| <= 1e-3 (VLMEvalKit dynamath.py)
        metadata={"seed": seed, "variant": variant, "subject": row.get("subject")},
    )


def _order(sample: Sample) -> tuple:
    seed = sample.metadata["seed"]  # numeric ids in numeric order, then the rest
    return (not seed.isdigit(), int(seed) if seed.isdigit() else 0, seed, sample.metadata["variant"])


BENCHMARK = Benchmark(
    name="dynamath",
    hub_id="DynaMath/DynaMath_Sample",
    splits={"all": Split(parts=VARIANTS, some_parts_local=True), **{v: Split(parts=(v,)) for v in VARIANTS}},
    default_split="all",
    to_sample=to_sample,
    metrics=dynamath_metrics,
    headline=("worst",),
    order=_order,
    cluster_by="seed",  # the ten variants of one seed question
    judge_prompt=OfficialJudge(
        pipeline="open-compass/VLMEvalKit:vlmeval/dataset/dynamath.py", prompt=judge_prompts.DYNAMATH,
        note="the DynaMath authors' evaluation scripts read the JSON answer by rules",
    ),
)
