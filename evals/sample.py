"""`Sample`: one benchmark item in the form every loader produces and the harness consumes."""

from __future__ import annotations

from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rapid_agent.answers import AnswerType, IntegerMatch

ImageSource = bytes | str | Image.Image
"""Encoded image bytes, a local file path, or a decoded image (what `rapid_agent.load_images` accepts)."""


class Sample(BaseModel):
    """A question with its image(s), options and gold answer, plus how to grade it.

    `options` holds the option texts (lettered A.. by position) with a letter or option text as
    `answer`. `options_in_question` marks options parsed out of the question text (MathVerse, MMStar,
    LogicVista, We-Math print them there): they serve grading only, and the prompt shows the question
    as the benchmark wrote it (`prompt_options` is None). Options printed only in the image stay None.
    `alt_answers` are further accepted golds (MMMU's list answers). `metadata` carries what the
    benchmark's aggregate metrics group by (subject, problem version, composite id, seed, ...).
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    id: str = Field(min_length=1)
    benchmark: str
    images: tuple[ImageSource, ...] = ()
    question: str = Field(min_length=1)
    options: tuple[str, ...] | None = None
    options_in_question: bool = False
    answer: str = Field(min_length=1)
    alt_answers: tuple[str, ...] = ()
    answer_type: AnswerType = "auto"
    precision: int | None = None
    tolerance: float | None = None
    integer_match: IntegerMatch = "exact"
    unit: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("question", "answer")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @property
    def prompt_options(self) -> list[str] | None:
        """The options to show beside the question (None when the question text already prints them)."""
        return list(self.options) if self.options and not self.options_in_question else None

    def grading(self) -> dict[str, Any]:
        """Keyword arguments for `rapid_agent.answers.grade` (everything but prediction and gold)."""
        return {
            "options": list(self.options) if self.options else None,
            "answer_type": self.answer_type,
            "precision": self.precision,
            "tolerance": self.tolerance,
            "integer_match": self.integer_match,
            "unit": self.unit,
        }
