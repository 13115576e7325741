"""The RAPID tools over the Model Context Protocol (official `mcp` SDK), for any agent.

* :mod:`.server`: one MCP server for the tools of `rapid_agent.serving.tools`, whatever runs them.
* :mod:`.http`: streamable HTTP at `/mcp` inside LangGraph's server (`graphs/mcp_app.py`).
* ``python -m rapid_agent.serving.mcp``: the same tools over stdio from in-process graphs.
"""
