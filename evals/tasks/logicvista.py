"""LogicVista (lscpku/LogicVista, split `test`): options in the question text ("(A) True (B) False",
parsed out for grading; often only in the image); the answer one or several letters ("A, C",
compared as a set); accuracy per `skill`.

Copies without an `id` column are keyed by `imagename` (the GitHub release's `v1_0.png` → `v1_0`),
else by a hash of the question and the image bytes, so ids stay stable across re-downloads.
"""

from __future__ import annotations

from pathlib import PurePath

from evals import judge_prompts
from evals.judge_prompts import OfficialJudge
from evals.metrics import by_group
from evals.sample import Sample
from evals.tasks.base import Benchmark, Row, Split
from evals.tasks.options import LOGICVISTA, embedded_options


def to_sample(row: Row) -> Sample:
    question, answer = row.text("question"), row.text("answer")
    image = row.image("image")
    options = embedded_options(question, LOGICVISTA, answer)
    return Sample(
        id=_sample_id(row, question),
        benchmark="logicvista",
        images=(image,),
        question=question,
        options=options,
        options_in_question=options is not None,
        answer=answer,
        answer_type="multiple_choice",
        metadata={"skill": _skill(row.get("skill"))},
    )


def _skill(value) -> str | None:
    """The GitHub release lists skills (["inductive"]); the Hub copy names one."""
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def _sample_id(row: Row, question: str) -> str:
    if row.present("id"):
        return row.text("id")
    if row.present("imagename"):
        return PurePath(row.text("imagename")).stem
    return row.content_key(question, "image")


BENCHMARK = Benchmark(
    name="logicvista",
    hub_id="lscpku/LogicVista",
    splits={"test": Split(parts=("test",))},
    default_split="test",
    to_sample=to_sample,
    metrics=by_group("skill"),
    judge_prompt=OfficialJudge(
        pipeline="open-compass/VLMEvalKit:vlmeval/dataset/utils/logicvista.py", prompt=judge_prompts.LOGICVISTA,
        note="its prompt adapts the LogicVista authors' eval/extract_accuracy.py",
    ),
)
