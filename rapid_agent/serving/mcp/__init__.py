"""The RAPID graph as tools for any agent, over the Model Context Protocol.

* :mod:`.tools`: `look_and_reason` and `describe_image` as small graphs over one RAPID graph; LangGraph's
  server lists them at `/mcp` (see `graphs/langgraph.json`).
* :mod:`.server`: the same tools from an in-process graph over stdio (`python -m rapid_agent.mcp`).
"""

from rapid_agent.mcp.tools import (
    DESCRIPTIONS,
    TOOL_NAMES,
    DescribeImageInput,
    DescribeImageOutput,
    LookAndReasonInput,
    LookAndReasonOutput,
    build_tool_graph,
    to_rapid_request,
)

__all__ = [
    "DESCRIPTIONS",
    "TOOL_NAMES",
    "DescribeImageInput",
    "DescribeImageOutput",
    "LookAndReasonInput",
    "LookAndReasonOutput",
    "build_tool_graph",
    "to_rapid_request",
]
