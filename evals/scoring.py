"""Grading one model output against a `Sample` by its benchmark's convention (the core grader).

The answer is the rule-based extraction (`rapid_agent.answers.extract_answer`); when that finds
none, the optional LLM judge reads the response, and failing that a short one-line response is
taken as the answer itself (MathVista's "direct parse"). Every accepted gold is tried.
"""

from __future__ import annotations

from pydantic import BaseModel

from evals.sample import Sample
from rapid_agent.answers import UnknownAnswerTypeError, extract_answer, grade, strip_think
from rapid_agent.errors import InputError

MAX_DIRECT_ANSWER_CHARS = 80


class Grade(BaseModel):
    """The extracted prediction, whether it is right, and how it was decided."""

    prediction: str | None
    correct: bool
    method: str


def extract(sample: Sample, output: str | None) -> str | None:
    """The rule-based answer of `output` (no judge), or None."""
    return extract_answer(output, list(sample.options) if sample.options else None)


def direct_answer(output: str | None) -> str | None:
    """A short, single-line response taken as the answer itself (e.g. an MLLM replying "12")."""
    text = strip_think(output or "").strip()
    return text if text and "\n" not in text and len(text) <= MAX_DIRECT_ANSWER_CHARS else None


def grade_prediction(sample: Sample, prediction: str | None, *, via: str = "rule") -> Grade:
    """Grade an extracted prediction against the sample's gold answer(s)."""
    try:
        verdicts = [grade(prediction, gold, **sample.grading()) for gold in (sample.answer, *sample.alt_answers)]
    except UnknownAnswerTypeError as exc:
        raise InputError(f"{sample.benchmark} sample {sample.id}: {exc}") from None
    best = next((v for v in verdicts if v.correct), verdicts[0])
    return Grade(prediction=best.prediction, correct=best.correct, method=f"{via}:{best.method}")
