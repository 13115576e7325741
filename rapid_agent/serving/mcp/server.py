"""One MCP server (official `mcp` SDK) for the RAPID tools, whatever runs them.

    build_server(graph_runner(tool_graphs), check=guard)   # stdio: in-process tool graphs (`python -m rapid_agent.serving.mcp`)
    build_server(served_runner(), check=guard)             # HTTP: runs on LangGraph's server (`.http`)

The server lists `look_and_reason` and `describe_image` with the schemas of `rapid_agent.serving.tools`,
passes each call to `check` (the request guard: it raises a `RapidError` to refuse), runs it and
returns the tool graph's output as structured content (and as JSON text). A refused or failed call is
an MCP error result (`isError`) whose text names the error type and what is wrong; the server keeps
serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from mcp import types
from mcp.server.lowlevel import Server

from rapid_agent.errors import RapidError
from rapid_agent.serving.tools import DESCRIPTIONS, TOOL_NAMES, tool_schemas, unknown_tool

ToolRunner = Callable[[str, dict[str, Any]], Awaitable[Mapping[str, Any]]]
"""`runner(tool, arguments)` -> the tool's output (its graph's)."""
ToolCheck = Callable[[str, dict[str, Any]], None]
"""`check(tool, arguments)` raises a `RapidError` to refuse the call (runs in a worker thread)."""

INSTRUCTIONS = (
    "RAPID vision tools for text-only models: `look_and_reason` answers a question about an image (a vision "
    "model describes it for the question, a reasoning model answers from the description); `describe_image` "
    "returns only the question-conditioned description. Images are file paths (under the server's allowed "
    "folder), http(s) URLs (where the server allows them) or base64 / data: URLs."
)


def tool_definitions() -> list[types.Tool]:
    """The MCP tool list: names, descriptions, input and output schemas of the RAPID tools."""
    tools = []
    for name in TOOL_NAMES:
        input_schema, output_schema = tool_schemas(name)
        tools.append(
            types.Tool(
                name=name,
                description=DESCRIPTIONS[name],
                inputSchema=input_schema,
                outputSchema=output_schema,
                annotations=types.ToolAnnotations(readOnlyHint=True, destructiveHint=False, openWorldHint=True),
            )
        )
    return tools


def build_server(runner: ToolRunner, *, check: ToolCheck | None = None, name: str = "rapid") -> Server:
    """An MCP server whose `tools/call` goes to `check`, then to `runner`; serve it over stdio or HTTP."""
    server: Server = Server(name, instructions=INSTRUCTIONS)

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return tool_definitions()

    # Arguments are checked by `check` and the tool graph (`to_rapid_request`), with the messages the
    # runs API gives, rather than by the SDK's JSON-schema pass.
    @server.call_tool(validate_input=False)
    async def call_tool(tool: str, arguments: dict[str, Any]) -> dict[str, Any] | types.CallToolResult:
        if tool not in TOOL_NAMES:
            return error_result(f"InputError: {unknown_tool(tool)}")
        try:
            if check is not None:  # image checks decode (and may resolve a host): off the event loop
                await asyncio.to_thread(check, tool, arguments)
            return dict(await runner(tool, arguments))
        except RapidError as exc:
            return error_result(f"{type(exc).__name__}: {exc}")

    return server


def graph_runner(tool_graphs: Mapping[str, CompiledStateGraph]) -> ToolRunner:
    """Run each tool with its in-process tool graph (`build_tool_graph`)."""

    async def run(tool: str, arguments: dict[str, Any]) -> Mapping[str, Any]:
        return await tool_graphs[tool].ainvoke(arguments)

    return run


def error_result(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=True)
