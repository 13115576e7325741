"""The RAPID graph inside LangChain agents: as a tool, or (directly) as a subgraph node.

As a tool::

    tool = as_tool(build_rapid_graph(captioner, reasoner))
    agent = langchain.agents.create_agent(model, tools=[tool])

As a subgraph, add the compiled graph as a node of a parent graph whose state has the keys
`question`, `images` (and optionally `options`); it writes back `answer`, `captions`, ... ::

    parent.add_node("look", build_rapid_graph(captioner, reasoner))
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable
from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

TOOL_DESCRIPTION = (
    "Look at an image and answer a question about it. A vision model describes the image with the "
    "question in mind and a reasoning model answers from that description. Returns the answer and "
    "the description it was based on."
)


class LookAndReasonArgs(BaseModel):
    """Arguments of the `look_and_reason` tool."""

    image: str = Field(description="The image: a file path, an http(s) URL, or a base64 / data: URL.")
    question: str = Field(description="The question about the image.")
    options: list[str] | None = Field(None, description="Multiple-choice options, if any (texts, in order A, B, ...).")


def as_tool(graph: Runnable, *, name: str = "look_and_reason", description: str = TOOL_DESCRIPTION,
            context: Any = None) -> StructuredTool:
    """Wrap a compiled RAPID graph as a LangChain tool (sync and async) for agents.

    `context` (a `RapidContext`) is passed to every run, e.g. to pin the reasoner the tool uses.
    """

    def _input(image: str, question: str, options: list[str] | None) -> dict[str, Any]:
        return {"images": [image], "question": question, "options": options}

    def run(image: str, question: str, options: list[str] | None = None) -> str:
        return format_tool_result(graph.invoke(_input(image, question, options), context=context))

    async def arun(image: str, question: str, options: list[str] | None = None) -> str:
        return format_tool_result(await graph.ainvoke(_input(image, question, options), context=context))

    return StructuredTool.from_function(
        func=run, coroutine=arun, name=name, description=description, args_schema=LookAndReasonArgs
    )


def format_tool_result(result: dict[str, Any]) -> str:
    """The text an agent sees: the answer (or that there was none) and the image description."""
    answer = result.get("answer")
    head = f"Answer: {answer}" if answer is not None else "No definite answer could be extracted."
    return f"{head}\n\nImage description: {' '.join(result.get('captions') or [])}"
