"""The eval harness's adapter to `rapid_agent.answers`: one `Sample`'s grading conventions, one path.

A model output is graded by `rapid_agent.answers.grade_output` (the library's own verdict path), with
the sample's options, answer type, precision, tolerance and unit, against every accepted gold; its
prediction is the graph's answer for the same output and options (the answer contract in
`rapid_agent.answers`). The optional LLM judge's answer is graded by the same `grade`.
"""

from __future__ import annotations

from pydantic import BaseModel

from evals.sample import Sample
from rapid_agent.answers import grade, grade_output


class Grade(BaseModel):
    """The answer as extracted (or as the judge gave it), whether it is right, and how it was decided
    ("rule:numeric", ...)."""

    prediction: str | None
    correct: bool
    method: str


def grade_sample(sample: Sample, output: str | None, *, truncated: bool = False) -> Grade:
    """The rules' verdict on a model output (`rapid_agent.answers.grade_output`); `truncated`: the graph's flag."""
    verdict = grade_output(output, [sample.answer, *sample.alt_answers], truncated=truncated, **sample.grading())
    return Grade(prediction=verdict.answer, correct=verdict.correct, method=f"rule:{verdict.method}")


def grade_prediction(sample: Sample, prediction: str | None, *, via: str) -> Grade:
    """Grade an answer read by other means (the LLM judge) against the sample's gold answer(s)."""
    verdict = grade(prediction, [sample.answer, *sample.alt_answers], **sample.grading())
    return Grade(prediction=verdict.answer, correct=verdict.correct, method=f"{via}:{verdict.method}")
