"""The one check of a RAPID request's input fields, shared by the graph and the served guard.

`validate_request` refuses a malformed question, options, captions or tentative answer with an
`InputError` naming the field (`input.<field>`) and the limit. The graph runs it on every input (and
again on its state before each model call); the served guard (`rapid_agent.serving.guard`) runs the
same function before a run is queued and adds only what a server needs (unknown fields, image sources
as strings, the model allowlist, the context's limits). `TextLimit.setting` names where a limit is
set, so each caller's message says what to change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rapid_agent.errors import InputError
from rapid_agent.prompts import MAX_OPTIONS, strip_image_tags

MAX_TEXT_CHARS = 20_000
"""Default longest question, option, caption, tentative answer or re-caption request."""


class TextLimit(BaseModel):
    """The longest text field a request may carry, and the setting that sets it (named in messages)."""

    model_config = ConfigDict(frozen=True)

    max_chars: int = Field(MAX_TEXT_CHARS, gt=0)
    setting: str = "max_text_chars"


def validate_request(request: Mapping[str, Any], limit: TextLimit) -> None:
    """Check a request's question, options, captions and tentative answer; raises `InputError`."""
    question = request.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InputError("input.question is required and must be a non-empty string")
    check_text("input.question", question, limit)
    if not strip_image_tags(question):
        raise InputError("input.question has no text besides <image N> tags")
    options = request.get("options")
    if options is not None:
        _check_texts("input.options", options, limit, non_empty=True)
        if len(options) > MAX_OPTIONS:
            raise InputError(f"input.options has {len(options)} options; the limit is {MAX_OPTIONS} (A-Z)")
    if request.get("captions") is not None:
        _check_texts("input.captions", request["captions"], limit, non_empty=False)
    tentative = request.get("tentative_answer")
    if tentative is not None:
        if not isinstance(tentative, str):
            raise InputError(f"input.tentative_answer must be a string, got {kind(tentative)}")
        check_text("input.tentative_answer", tentative, limit)


def check_text(where: str, text: str, limit: TextLimit) -> None:
    """Refuse a text longer than the limit, naming the field and the setting."""
    if len(text) > limit.max_chars:
        raise InputError(f"{where} has {len(text)} characters; the limit is {limit.max_chars} ({limit.setting})")


def check_texts(where: str, texts: Sequence[str], limit: TextLimit) -> None:
    """`check_text` on each item, named `where[i]`."""
    for i, text in enumerate(texts):
        check_text(f"{where}[{i}]", text, limit)


def kind(value: Any) -> str:
    """A JSON-ish name of a value's type, for messages."""
    return "null" if value is None else type(value).__name__


def _check_texts(where: str, texts: Any, limit: TextLimit, *, non_empty: bool) -> None:
    if not isinstance(texts, (list, tuple)) or not all(
        isinstance(t, str) and (t.strip() or not non_empty) for t in texts
    ):
        what = "non-empty strings" if non_empty else "strings"
        raise InputError(f"{where} must be a list of {what}, got {texts!r:.200}")
    check_texts(where, texts, limit)
