"""The agent-facing tools over the RAPID graph, as small LangGraph graphs whose schemas are the tools'.

    look_and_reason(image, question, options?, reasoner?, samples?) -> {answer, caption, reasoning, vote}
    describe_image(image, question)                       -> {caption}   (perception only)

Each tool graph is a thin wrapper over one compiled `build_rapid_graph` pipeline: it maps the tool's
arguments onto the pipeline's input and context (`to_rapid_request`; strict: unknown names and wrong
types raise `InputError`; `look_and_reason` may pick the call's reasoner and ask for several reasoner
samples put to a vote, up to the server's limit), runs the pipeline
(`describe_image` stops before `reason`; a preset that uses the MLLM's tentative answer still computes
it) and keeps only what an agent needs. The MCP servers (`rapid_agent.serving.mcp`) list these schemas;
LangGraph's server runs the graphs (`rapid_agent.serving.graphs`).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import get_runtime
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import NotRequired, TypedDict

from rapid_agent.agents import TOOL_DESCRIPTION, LookAndReasonArgs
from rapid_agent.errors import ConfigError, InputError
from rapid_agent.prompts import join_captions
from rapid_agent.state import RapidContext, RapidInput
from rapid_agent.voting import VoteCount, VoteOutcome

ToolName = Literal["look_and_reason", "describe_image"]
TOOL_NAMES: tuple[ToolName, ...] = ("look_and_reason", "describe_image")

_STRICT = ConfigDict(extra="forbid", strict=True)
_ARGS = LookAndReasonArgs.model_fields
_Image = Annotated[str, Field(min_length=1, description=_ARGS["image"].description)]
_Question = Annotated[str, Field(min_length=1, description=_ARGS["question"].description)]


class LookAndReasonInput(TypedDict):
    """Look at an image and answer a question about it."""

    __pydantic_config__ = _STRICT  # type: ignore[misc]

    image: _Image
    question: _Question
    options: NotRequired[Annotated[list[str] | None, Field(description=_ARGS["options"].description)]]
    reasoner: NotRequired[
        Annotated[
            str | None,
            Field(description="Model spec of the reasoning model for this call, among those the server allows; "
                  "omit to use the server's default."),
        ]
    ]
    samples: NotRequired[
        Annotated[
            int | None,
            Field(ge=1, description="Answer this many times from the same description and return the majority "
                  "answer (self-consistency), up to the server's limit; omit for the server's default."),
        ]
    ]


class VoteSummary(TypedDict):
    """How the samples voted: `majority`, `tie` or `no_answer`, and each distinct answer's votes."""

    outcome: VoteOutcome
    counts: list[VoteCount]


class LookAndReasonOutput(TypedDict):
    """`answer` is None when the reasoner gave no definite answer (with several samples: also on a tie);
    `caption` is what it answered from; `vote` (None for one sample) how the samples voted."""

    answer: str | None
    caption: str
    reasoning: str | None
    vote: VoteSummary | None


class DescribeImageInput(TypedDict):
    """Describe an image with a question in mind (no answer is attempted)."""

    __pydantic_config__ = _STRICT  # type: ignore[misc]

    image: _Image
    question: _Question


class DescribeImageOutput(TypedDict):
    """The question-conditioned description of the image."""

    caption: str


class _LookAndReasonState(LookAndReasonInput, LookAndReasonOutput):
    pass


class _DescribeImageState(DescribeImageInput, DescribeImageOutput):
    pass


DESCRIPTIONS: dict[ToolName, str] = {
    "look_and_reason": TOOL_DESCRIPTION
    + " Result fields: answer (null when no definite answer could be extracted), caption, reasoning.",
    "describe_image": (
        "Describe an image in detail with a question in mind, without answering it: a vision model "
        "writes what is relevant to the question (objects, text, numbers, layout). Use it to look at an "
        "image and reason about the description yourself. Returns the description (caption)."
    ),
}
_INPUTS: dict[ToolName, TypeAdapter] = {
    "look_and_reason": TypeAdapter(LookAndReasonInput),
    "describe_image": TypeAdapter(DescribeImageInput),
}
_OUTPUTS: dict[ToolName, TypeAdapter] = {
    "look_and_reason": TypeAdapter(LookAndReasonOutput),
    "describe_image": TypeAdapter(DescribeImageOutput),
}


def unknown_tool(tool: Any) -> str:
    """The message for a tool name that is not one of `TOOL_NAMES`."""
    return f"unknown tool {tool!r:.100}; the tools are {list(TOOL_NAMES)}"


def tool_schemas(tool: ToolName) -> tuple[dict[str, Any], dict[str, Any]]:
    """JSON schemas of a tool's arguments and of its result (what its graph takes and returns)."""
    return _INPUTS[tool].json_schema(), _OUTPUTS[tool].json_schema()


def to_rapid_request(tool: str, arguments: Any) -> tuple[RapidInput, dict[str, Any]]:
    """The RAPID graph's input and context overrides for a tool call.

    Unknown tools, argument names or types raise `InputError`; values are checked later, by the request
    guard (served) and by the graph itself (image policy, model allowlist).
    """
    if tool not in _INPUTS:
        raise InputError(unknown_tool(tool))
    try:
        args = _INPUTS[tool].validate_python(arguments)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
        raise InputError(f"bad arguments for {tool}: {problems}") from None
    inputs = RapidInput(images=[args["image"]], question=args["question"], options=args.get("options"))
    named = {"reasoner": "reasoner", "samples": "reasoner_samples"}
    overrides = {field: args[arg] for arg, field in named.items() if args.get(arg) is not None}
    return inputs, overrides


def build_tool_graph(rapid: CompiledStateGraph, tool: ToolName) -> CompiledStateGraph:
    """The tool `tool` as a graph over the compiled RAPID graph `rapid` (its runs take a `RapidContext`).

    The pipeline runs as its own top-level run: it writes no checkpoint into the caller's thread, and
    `describe_image` can stop before `reason` (an interrupt inside a nested run would stop the caller).
    """
    if tool not in _INPUTS:
        raise ConfigError(unknown_tool(tool))
    perception_only = tool == "describe_image"
    options: dict[str, Any] = {"interrupt_before": ["reason"]} if perception_only else {}

    def result(out: Mapping[str, Any]) -> dict[str, Any]:
        caption = join_captions(out["captions"], out.get("recaption_requests") or [], out.get("caption_rounds"))
        if perception_only:
            return {"caption": caption}
        vote = out.get("vote")
        summary = VoteSummary(outcome=vote["outcome"], counts=vote["counts"]) if vote else None
        return {"answer": out.get("answer"), "caption": caption, "reasoning": out.get("reasoning"), "vote": summary}

    def request(state: Mapping[str, Any]) -> tuple[RapidInput, RapidContext]:
        inputs, overrides = to_rapid_request(tool, dict(state))
        context = get_runtime(RapidContext).context or RapidContext()
        return inputs, context.model_copy(update=overrides)

    def run(state: Mapping[str, Any]) -> dict[str, Any]:
        inputs, context = request(state)
        return result(_detached(rapid.invoke, inputs, context=context, **options))

    async def arun(state: Mapping[str, Any]) -> dict[str, Any]:
        inputs, context = request(state)
        return result(await _adetached(rapid.ainvoke(inputs, context=context, **options)))

    state, input_, output = (
        (_DescribeImageState, DescribeImageInput, DescribeImageOutput)
        if perception_only
        else (_LookAndReasonState, LookAndReasonInput, LookAndReasonOutput)
    )
    builder = StateGraph(state, context_schema=RapidContext, input_schema=input_, output_schema=output)
    builder.add_node(tool, RunnableLambda(run, afunc=arun, name=tool))
    builder.add_edge(START, tool)
    builder.add_edge(tool, END)
    return builder.compile(name=tool)


def _detached(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call `fn` in an empty context: a graph run there is top-level, not nested in the calling run."""
    return contextvars.Context().run(fn, *args, **kwargs)


async def _adetached(coro: Any) -> Any:
    """Await `coro` as a task created in an empty context (see `_detached`)."""
    return await contextvars.Context().run(asyncio.ensure_future, coro)
