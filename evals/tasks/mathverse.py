"""MathVerse (AI4Math/MathVerse, config and split `testmini`): six problem versions of each problem.

Options live in the question text ("Choices:\nA:5\nB:6", parsed out for grading) or, for Vision
Only, only in the image; `answer` is a letter for `multi-choice`. `image` is empty for Text Only.
Vision Only rows may carry no question text (it is in the image), so `query_wo` stands in. Splits
`vision_only` .. `text_only` select a version.
"""

from __future__ import annotations

from evals import judge_prompts
from evals.judge_prompts import OfficialJudge
from evals.metrics import by_group
from evals.sample import Sample
from evals.tasks.base import Benchmark, Row, Split
from evals.tasks.options import MATHVERSE, embedded_options

VERSIONS = ("Text Dominant", "Text Lite", "Text Only", "Vision Intensive", "Vision Dominant", "Vision Only")
QUESTION_TYPES = {"multi-choice": "multiple_choice", "free-form": "auto"}


def to_sample(row: Row) -> Sample:
    version = row.text("problem_version")
    if version not in VERSIONS:
        raise row.error(f"unknown problem_version {version!r}; expected one of {list(VERSIONS)}")
    image = row.image("image", required=version != "Text Only")
    question = str(row.get("question") or "").strip() or row.text("query_wo")
    meta = row.get("metadata") or {}
    answer_type, answer = row.choice("question_type", QUESTION_TYPES), row.text("answer")
    options = embedded_options(question, MATHVERSE, answer) if answer_type == "multiple_choice" else None
    return Sample(
        id=row.text("sample_index"),
        benchmark="mathverse",
        images=(image,) if image is not None else (),
        question=question,
        options=options,
        options_in_question=options is not None,
        answer=answer,
        answer_type=answer_type,
        metadata={"version": version, "problem": row.text("problem_index"), "subfield": meta.get("subfield")},
    )


BENCHMARK = Benchmark(
    name="mathverse",
    hub_id="AI4Math/MathVerse",
    configs=("testmini",),
    splits={
        "testmini": Split(parts=("testmini",)),
        **{v.lower().replace(" ", "_"): Split(parts=("testmini",), where=("problem_version", v)) for v in VERSIONS},
    },
    default_split="testmini",
    to_sample=to_sample,
    metrics=by_group("version"),
    cluster_by="problem",  # the six versions of one problem_index
    judge_prompt=OfficialJudge(
        pipeline="ZrrSkywalker/MathVerse:evaluation/extract_answer_s1.py, score_answer_s2.py", prompt=judge_prompts.MATHVERSE,
        note="extract, then score the extraction against the gold answer",
    ),
)
