"""The RAPID tools over MCP's streamable HTTP, inside LangGraph's server (`graphs/mcp_app.py`).

The app's route sits behind the server's authentication (`enable_custom_route_auth`). Each `tools/call`
becomes a stateless run of the tool's graph on the same server through its in-process client. That
client skips the server's auth hooks, so the request guard must run before it: `build_server(...,
check=...)` does, for every call.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from mcp.server.fastmcp.server import StreamableHTTPASGIApp
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.routing import Route

from rapid_agent.mcp.server import ToolRunner
from rapid_agent.serving_client import error_from_http, run_output


def served_runner() -> ToolRunner:
    """Run each tool as a stateless run of the graph of that name on this process's LangGraph server."""
    clients: list[LangGraphClient] = []

    async def run(tool: str, arguments: dict[str, Any]) -> Mapping[str, Any]:
        if not clients:  # made on first use: the in-process client imports the server app
            clients.append(get_client(url=None))
        try:
            result = await clients[0].runs.wait(None, tool, input=arguments, raise_error=False)
        except httpx.HTTPStatusError as exc:
            raise error_from_http(exc) from None
        return run_output(result)

    return run


def mcp_http_app(server: Server, *, max_body_bytes: int, path: str = "/mcp") -> Starlette:
    """A Starlette app serving `server` at `path` (stateless streamable HTTP, JSON responses).

    A request body over `max_body_bytes` is refused by the transport (HTTP 413) before any check:
    set it well above the largest call the checks accept, so that those refuse with their message.
    """
    manager = StreamableHTTPSessionManager(
        app=server, stateless=True, json_response=True, max_request_body_size=max_body_bytes
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return Starlette(
        routes=[Route(path, endpoint=StreamableHTTPASGIApp(manager), methods=["GET", "POST", "DELETE"])],
        lifespan=lifespan,
    )
