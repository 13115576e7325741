"""The eval harness's adapter to `rapid_agent.answers`: one `Sample`'s grading conventions, one path.

A model output is graded by `rapid_agent.answers.grade_output` (the library's own verdict path), with
the sample's options, answer type, precision, tolerance and unit, against every accepted gold. The
optional LLM judge's answer is graded by the same `grade`.
"""

from __future__ import annotations

from pydantic import BaseModel

from evals.sample import Sample
from rapid_agent.answers import grade, grade_output


class Grade(BaseModel):
    """The extracted prediction, whether it is right, and how it was decided ("rule:numeric", ...)."""

    prediction: str | None
    correct: bool
    method: str


def grade_sample(sample: Sample, output: str | None) -> Grade:
    """The rules' verdict on a model output (`rapid_agent.answers.grade_output`)."""
    verdict = grade_output(output, [sample.answer, *sample.alt_answers], **sample.grading())
    return Grade(prediction=verdict.prediction, correct=verdict.correct, method=f"rule:{verdict.method}")


def grade_prediction(sample: Sample, prediction: str | None, *, via: str) -> Grade:
    """Grade an answer read by other means (the LLM judge) against the sample's gold answer(s)."""
    verdict = grade(prediction, [sample.answer, *sample.alt_answers], **sample.grading())
    return Grade(prediction=verdict.prediction, correct=verdict.correct, method=f"{via}:{verdict.method}")
