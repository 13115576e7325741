"""`/mcp` on the served RAPID graphs (`langgraph.json` `http.app`, behind the server's API-key auth).

An MCP server (official SDK, stateless streamable HTTP) with the tools `look_and_reason` and
`describe_image`: each call passes the run guard (`graphs.tools.check_tool_call`), then runs the tool
graph of that name (`graphs/tools.py`) on this server.
"""

from functools import partial

from graphs.settings import ServeSettings
from graphs.tools import check_tool_call
from rapid_agent.mcp.http import mcp_http_app, served_runner
from rapid_agent.mcp.server import build_server

app = mcp_http_app(build_server(served_runner(), check=partial(check_tool_call, settings=ServeSettings.from_env())))
