"""The RAPID tools over MCP's streamable HTTP, inside LangGraph's server (`graphs/mcp_app.py` is its entry).

The app's route sits behind the server's authentication (`enable_custom_route_auth`). Each `tools/call`
becomes a stateless run of the tool's graph on the same server through its in-process client. That
client skips the server's auth hooks, so the request guard must run before it: `build_server(...,
check=...)` does, for every call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from mcp.server.fastmcp.server import StreamableHTTPASGIApp
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.routing import Route

from rapid_agent.prompts import MAX_OPTIONS
from rapid_agent.serving.client import error_from_http, run_output
from rapid_agent.serving.guard import check_tool_call
from rapid_agent.serving.mcp.server import ToolRunner, build_server
from rapid_agent.serving.settings import ServeSettings


def served_mcp_app(settings: ServeSettings, *, startup: Callable[[], object] | None = None) -> Starlette:
    """`/mcp` on LangGraph's server: every call through the request guard of `settings`, then run there.

    `startup` runs (in a worker thread) when the server starts: the entry file builds and checks the
    served graphs there, so a wrong served model fails the start, not the first run.
    """
    server = build_server(served_runner(), check=lambda tool, arguments: check_tool_call(tool, arguments, settings))
    return mcp_http_app(server, max_body_bytes=body_limit(settings), startup=startup)


def body_limit(settings: ServeSettings) -> int:
    """Twice the largest call the guard accepts (one base64 image, a question and options, all JSON-escaped
    at 6 bytes a character), so that a call over the limits gets the guard's message, not an HTTP 413."""
    largest = settings.max_image_bytes * 4 // 3 + 6 * settings.max_text_chars * (1 + MAX_OPTIONS)
    return 2 * largest + 64 * 1024


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


def mcp_http_app(
    server: Server, *, max_body_bytes: int, path: str = "/mcp", startup: Callable[[], object] | None = None
) -> Starlette:
    """A Starlette app serving `server` at `path` (stateless streamable HTTP, JSON responses).

    A request body over `max_body_bytes` is refused by the transport (HTTP 413) before any check:
    set it well above the largest call the checks accept, so that those refuse with their message.
    """
    manager = StreamableHTTPSessionManager(
        app=server, stateless=True, json_response=True, max_request_body_size=max_body_bytes
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if startup is not None:
            await asyncio.to_thread(startup)
        async with manager.run():
            yield

    return Starlette(
        routes=[Route(path, endpoint=StreamableHTTPASGIApp(manager), methods=["GET", "POST", "DELETE"])],
        lifespan=lifespan,
    )
