"""Named, versioned prompt presets (the paper's captioning, training and evaluation prompts).

A preset fixes every text the graph sends to a model. Presets are looked up by name, so a
run's configuration (and a cache key) can name the exact prompts it used.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from rapid_agent.errors import ConfigError, InputError, describe_validation

RECAPTION_TAG = "recaption"
_RECAPTION_RE = re.compile(rf"<{RECAPTION_TAG}>(.*?)</{RECAPTION_TAG}>", re.DOTALL | re.IGNORECASE)
_IMAGE_TAG_RE = re.compile(r"<image(?:\s*\d+)?>\s*", re.IGNORECASE)
MAX_OPTIONS = 26  # options are lettered A..Z

CAPTION_SYSTEM = (
    "You are given an image and a relevant question. Based on the query, please describe the image "
    "in detail. Do not try to answer the question."
)
CAPTION_USER = "Question: {question}\nPlease describe the image. DO NOT try to answer the question!"
RECAPTION_USER = (
    "Question: {question}\nA reader of your earlier description needs more detail: {request}\n"
    "Please describe the parts of the image that answer this request. DO NOT try to answer the question!"
)
ASSISTANT_SYSTEM = "You are a helpful assistant."
TRAIN_REASONER_USER = (
    "### The detailed caption of the provided image: {caption}\n\n### Question: {question} "
    "Please think step by step. The final answer MUST BE put in \\boxed{{}}."
)
EVAL_REASONER_USER = "\n\n".join(
    [
        "In the following text, you will receive a detailed caption of an image and a relevant question. "
        "In addition, you will be provided with a tentative model response. Your goal is to answer the "
        "question using these information.",
        "### The detailed caption of the provided image: {caption}",
        "### Note that the caption might contain incorrect solutions, do not be misguided by them.",
        "### A problem to be solved: {question}",
        "### A tentative model response: {tentative}",
        "### Note that the above tentative response might be inaccurate (due to calculation errors, "
        "incorrect logic/reasoning and so on), under such a case, please ignore it and give your own "
        "solutions. However, if you do not have enough evidence to show it is wrong, please output the "
        "tentative response.",
        "### Please think step by step. The final answer MUST BE put in \\boxed{{}}.",
    ]
)
RECAPTION_INSTRUCTION = (
    "\n\nIf the caption lacks information you need, do not guess: reply only with "
    f"<{RECAPTION_TAG}>what to look at in the image</{RECAPTION_TAG}> and you will get a new caption."
)
BLIND_REASONER_USER = (
    "### Question: {question} Please think step by step. The final answer MUST BE put in \\boxed{{}}."
)


# the `{...}` fields each template may use (`{{` / `}}` are literal braces)
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "caption_system": frozenset(),
    "caption_user": frozenset({"question"}),
    "recaption_user": frozenset({"question", "request"}),
    "tentative_system": frozenset(),
    "reasoner_system": frozenset(),
    "reasoner_user": frozenset({"caption", "question", "tentative"}),
}


class PromptPreset(BaseModel):
    """Every prompt text of one pipeline variant; `{...}` fields are filled by `str.format`.

    Each template may use only its own placeholders (`PLACEHOLDERS`); anything else (an unknown
    name, a positional `{}`, attribute or index access) is a `ConfigError` when the preset is made.
    `uses_captions=False` (the `blind` preset) asks the reasoner without any caption or captioner.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    caption_system: str = CAPTION_SYSTEM
    caption_user: str = CAPTION_USER
    recaption_user: str = RECAPTION_USER
    tentative_system: str = ASSISTANT_SYSTEM
    reasoner_system: str = ASSISTANT_SYSTEM
    reasoner_user: str
    uses_tentative: bool = False
    uses_captions: bool = True

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(f"bad prompt preset: {describe_validation(exc, 'preset')}") from None

    @field_validator(*PLACEHOLDERS)
    @classmethod
    def _known_placeholders(cls, template: str, info) -> str:
        allowed = PLACEHOLDERS[info.field_name]
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
        except ValueError as exc:
            raise ValueError(f"not a valid format template ({exc}); write literal braces as {{{{ and }}}}") from None
        if unknown := [name for name in fields if name not in allowed]:
            raise ValueError(
                f"unknown placeholder(s) {sorted(set(unknown))}; this template may use only "
                f"{sorted('{' + name + '}' for name in allowed) or 'none'}"
            )
        return template

    @property
    def key(self) -> str:
        """Stable identity (name and version) for caches and run configs."""
        return f"{self.name}@v{self.version}"


PRESETS: dict[str, PromptPreset] = {
    p.name: p
    for p in (
        PromptPreset(name="paper-train", version=1, reasoner_user=TRAIN_REASONER_USER),
        PromptPreset(name="paper-eval", version=1, reasoner_user=EVAL_REASONER_USER, uses_tentative=True),
        # the reasoner alone, without any caption: the language-prior floor in evals ("blind" mode)
        PromptPreset(name="blind", version=1, reasoner_user=BLIND_REASONER_USER, uses_captions=False),
    )
}
DEFAULT_PRESET = "paper-train"


def get_preset(preset: str | PromptPreset) -> PromptPreset:
    """Return a preset by name (or pass a `PromptPreset` through); unknown names raise `ConfigError`."""
    if isinstance(preset, PromptPreset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise ConfigError(f"unknown prompt preset {preset!r}; known presets: {sorted(PRESETS)}") from None


def strip_image_tags(text: str) -> str:
    """Remove `<image>` / `<image 2>` placeholders, which mean nothing to a text-only reasoner."""
    return _IMAGE_TAG_RE.sub("", text).strip()


def format_question(question: str, options: Sequence[str] | None = None) -> str:
    """The question with its options appended as `Options:\\nA. ...` (the paper's layout).

    More than `MAX_OPTIONS` options (no letter left) is an `InputError`.
    """
    question = strip_image_tags(question)
    if not options:
        return question
    if len(options) > MAX_OPTIONS:
        raise InputError(f"options: {len(options)} given; the limit is {MAX_OPTIONS} (lettered A-Z)")
    lines = [f"{chr(ord('A') + i)}. {opt}" for i, opt in enumerate(options)]
    return question + "\nOptions:\n" + "\n".join(lines)


def join_captions(captions: Sequence[str], requests: Sequence[str], rounds: Sequence[int] | None = None) -> str:
    """The caption text the reasoner reads: the first descriptions, then each re-caption headed by its request.

    `rounds` counts the captions each round added (the first entry: the descriptions read first, one per
    captioner or as given; each later one: a re-caption round's); None: one caption per round. Several
    descriptions of one round are labelled `Description i of n`, one after another.
    """
    counts = list(rounds) if rounds is not None else [1] * len(captions)
    groups, start = [], 0
    for count in counts:
        groups.append(list(captions[start:start + count]))
        start += count
    parts = [_labelled(groups[0])] if groups else []
    for request, group in zip(requests, groups[1:], strict=False):
        parts.append(f"\n\n### Additional description ({request}): {_labelled(group)}")
    return "".join(parts)


def _labelled(descriptions: Sequence[str]) -> str:
    if len(descriptions) == 1:
        return descriptions[0]
    n = len(descriptions)
    return "\n\n".join(f"Description {i} of {n}: {text}" for i, text in enumerate(descriptions, 1))


def parse_recaption_request(reasoner_output: str) -> str | None:
    """The reasoner's `<recaption>...</recaption>` request, or None when it did not ask."""
    match = _RECAPTION_RE.search(reasoner_output or "")
    if match is None:
        return None
    return match.group(1).strip() or None
