"""The RAPID tools served at `/mcp` (see `langgraph.json`, `mcp_app.py`): `look_and_reason`, `describe_image`.

Both wrap the served `rapid` graph (same models, resolver, image policy and allowlist). Their runs pass
the same request guard as the graph's own: `rapid_run_request` maps a tool run's arguments onto the
RAPID input and context that `graphs.guard.check_run_request` checks (the auth hook calls it for
every new run); `check_tool_call` is the same guard for the MCP server, whose runs go in-process.
"""

from __future__ import annotations

from functools import cache
from typing import Any
from uuid import UUID, uuid5

from graphs.guard import check_run_request
from graphs.rapid import graph
from graphs.settings import ServeSettings
from rapid_agent.mcp.tools import TOOL_NAMES, build_tool_graph, to_rapid_request

look_and_reason = build_tool_graph(graph, "look_and_reason")
describe_image = build_tool_graph(graph, "describe_image")


@cache
def _tool_of_assistant() -> dict[UUID, str]:
    """The server runs a graph through its system assistant, whose id is derived from the graph id."""
    from langgraph_api.graph import NAMESPACE_GRAPH  # the server's module: imported in the server only

    return {uuid5(NAMESPACE_GRAPH, name): name for name in TOOL_NAMES}


def rapid_run_request(assistant_id: UUID | str | None, input_: Any, context: Any) -> tuple[Any, Any]:
    """The (input, context) the RAPID graph will see for a run of `assistant_id`.

    A tool run's arguments are mapped onto them (`tool_run_request`); other runs pass unchanged.
    """
    try:
        tool = _tool_of_assistant().get(UUID(str(assistant_id)))
    except ValueError:
        tool = None
    return (input_, context) if tool is None else tool_run_request(tool, input_, context)


def tool_run_request(tool: str, arguments: Any, context: Any) -> tuple[Any, Any]:
    """The RAPID (input, context) of a call of `tool`; wrong argument names or types raise `InputError`."""
    inputs, overrides = to_rapid_request(tool, arguments)
    if overrides and (context is None or isinstance(context, dict)):
        context = (context or {}) | overrides
    return inputs, context


def check_tool_call(tool: str, arguments: Any, settings: ServeSettings) -> None:
    """The request guard on a call of `tool`: the checks a run of its graph passes (see `graphs/auth.py`)."""
    check_run_request(*tool_run_request(tool, arguments, None), settings)
