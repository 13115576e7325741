"""`/mcp` on the served RAPID graphs (`langgraph.json` `http.app`, behind the server's API-key auth).

An MCP server (official SDK, stateless streamable HTTP) with the tools `look_and_reason` and
`describe_image`: each call passes the run guard (`graphs.tools.check_tool_call`), then runs the tool
graph of that name (`graphs/tools.py`) on this server.
"""

from functools import partial

from graphs.guard import MAX_OPTIONS
from graphs.settings import ServeSettings
from graphs.tools import check_tool_call
from rapid_agent.mcp.http import mcp_http_app, served_runner
from rapid_agent.mcp.server import build_server


def body_limit(settings: ServeSettings) -> int:
    """Twice the largest call the guard accepts (one base64 image, a question and options, all JSON-escaped
    at 6 bytes a character), so that a call over the limits gets the guard's message, not an HTTP 413."""
    largest = settings.max_image_bytes * 4 // 3 + 6 * settings.max_text_chars * (1 + MAX_OPTIONS)
    return 2 * largest + 64 * 1024


settings = ServeSettings.from_env()
app = mcp_http_app(
    build_server(served_runner(), check=partial(check_tool_call, settings=settings)), max_body_bytes=body_limit(settings)
)
