"""The graph's typed state and its per-call runtime context."""

from __future__ import annotations

import operator
from typing import Annotated

from langchain_core.language_models import BaseChatModel
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from typing_extensions import NotRequired, TypedDict

from rapid_agent.errors import ConfigError, describe_validation
from rapid_agent.images import ImageInput
from rapid_agent.prompts import PromptPreset
from rapid_agent.voting import Vote


class NodeUsage(TypedDict):
    """Token usage and latency of one model call made by one node."""

    node: str
    round: int
    model: str
    input_tokens: int
    output_tokens: int
    latency_s: float


SchemaImage = Annotated[
    ImageInput,
    PlainValidator(lambda value: value),  # `prepare` checks images under the ImagePolicy, not the schema
    WithJsonSchema({
        "type": "string",
        "description": "an image: a data:image/...;base64, URL, raw base64, a file path, or an http(s) URL "
        "(in Python also bytes, pathlib.Path or PIL.Image)",
    }),
]
"""An image input as the graph's JSON schema shows it (served graphs, tools, Studio)."""


class RapidInput(TypedDict):
    """What a caller sends. Give `captions` to skip the `caption` node (VPO feeds policy captions so).

    A run answers its own input: on a thread (any checkpointer), a field this input leaves out is
    empty for this run, never the previous run's value.
    """

    images: NotRequired[list[SchemaImage]]
    question: str
    options: NotRequired[list[str] | None]
    captions: NotRequired[list[str]]
    tentative_answer: NotRequired[str | None]


def all_cached(current: bool | None, new: bool | None) -> bool | None:
    """`perception_cached` over a run's captioner outputs: True while each came from the cache; a
    None write (the start of a run) starts over."""
    return new if current is None or new is None else current and new


class RapidState(RapidInput):
    """The full state: inputs plus everything the nodes produce."""

    recaption_requests: NotRequired[list[str]]
    reasoning: NotRequired[str | None]
    answer: NotRequired[str | None]
    round: NotRequired[int]
    truncated: NotRequired[bool]
    caption_rounds: NotRequired[list[int]]
    vote: NotRequired[Vote | None]
    usage: NotRequired[Annotated[list[NodeUsage], operator.add]]
    perception_cached: NotRequired[Annotated[bool | None, all_cached]]


class RapidOutput(TypedDict):
    """What a run returns (the state minus the raw images).

    `reasoning` is the reasoner's whole output: its thinking (a server's separate `reasoning_content`
    is kept as `<think>...</think>`) and its reply; `answer` is extracted from the reply only.
    `truncated` is True when the reasoner stopped inside its thinking (an unclosed `<think>`) or was
    cut off by its token limit (`finish_reason == "length"`) before a `\\boxed{}` answer; `answer` is
    then None. Re-caption requests are never truncated.

    `caption_rounds` counts the captions each round added: first the descriptions the reasoner read
    first (one per captioner of a captioner list, or those given), then one entry per re-caption round.

    With `reasoner_samples=k > 1`, `vote` holds the vote over the k samples (`rapid_agent.voting.Vote`:
    outcome, counts, every sample's reasoning and answer); `answer` is the winner (None on a tie or
    when no sample answered), `reasoning` and `truncated` those of the first sample that gave it (with
    no answer at all: the first sample's; on a tie `reasoning` is None), and `usage` lists every call.
    With k = 1 `vote` is None. `perception_cached` is True when every
    captioner output of the run came from the caption cache (`rapid_agent.caching`), False when one
    was computed, None when the run asked the captioner nothing; a cached output's `usage` entry is
    the one of the call that made it.
    """

    question: str
    options: NotRequired[list[str] | None]
    captions: list[str]
    recaption_requests: NotRequired[list[str]]
    tentative_answer: NotRequired[str | None]
    reasoning: str | None
    answer: str | None
    round: int
    truncated: bool
    caption_rounds: NotRequired[list[int]]
    vote: NotRequired[Vote | None]
    usage: list[NodeUsage]
    perception_cached: NotRequired[bool | None]


class RapidContext(BaseModel):
    """Per-call overrides (LangGraph runtime context). `None` fields fall back to the build-time setting.

    `captioner` / `reasoner` accept a `BaseChatModel` or a spec string (see `rapid_agent.models.spec`);
    `captioner` may be a list of them (distinct): each describes the image, and the reasoner reads the
    descriptions one after another, labelled (the first captioner gives a tentative answer). With
    `reasoner_samples=k`, the reasoner answers k times from the same caption(s) and the answers are put
    to a vote (`rapid_agent.voting`; sampling needs a reasoner with a temperature above 0). Unknown fields and wrong types are a `ConfigError` naming the field, so a typo in a served
    run's `context` fails loudly.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    captioner: BaseChatModel | str | tuple[BaseChatModel | str, ...] | None = None
    reasoner: BaseChatModel | str | None = None
    prompt_preset: str | PromptPreset | None = None
    max_recaption_rounds: int | None = Field(None, ge=0, strict=True)
    reasoner_samples: int | None = Field(None, ge=1, strict=True)

    def __init__(self, **data: object) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(f"bad context: {describe_validation(exc, 'context')}") from None

    @field_validator("captioner")
    @classmethod
    def _captioner_list(cls, captioner: object) -> object:
        if isinstance(captioner, tuple):
            if not captioner:
                raise ValueError("a captioner list needs at least one captioner")
            specs = [c.strip() if isinstance(c, str) else id(c) for c in captioner]
            if len(set(specs)) != len(specs):
                raise ValueError("a captioner is listed twice")
            if len(captioner) == 1:
                return captioner[0]
        return captioner
