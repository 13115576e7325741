"""`/mcp` on the served RAPID graphs (`langgraph.json` `http.app`, behind the server's API-key auth).

The server's start builds and checks the served graphs (`process_graphs`): a wrong served model fails
the start, not the first run. See `rapid_agent.serving.mcp.http`.
"""

from rapid_agent.serving.mcp.http import served_mcp_app
from rapid_agent.serving.process import process_graphs, process_settings

app = served_mcp_app(process_settings(), startup=process_graphs)
