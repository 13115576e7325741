"""The serving wing: the RAPID graph behind LangGraph's server and over MCP, configured once.

    settings.py   `ServeSettings`: every `RAPID_*` variable, read in one place
    guard.py      what remote callers may send (the library's `validate_request` plus server-only checks)
    graphs.py     `ServedGraphs`: the served graphs of one settings, built on first use
    tools.py      `look_and_reason` / `describe_image` as graphs over the RAPID graph
    auth.py       `build_auth`: LangGraph's auth hook (API keys, default deny, the guard on every run)
    process.py    this process's settings and graphs (the environment is read once)
    mcp/          the tools over MCP: stdio (`python -m rapid_agent.serving.mcp`) and HTTP (`/mcp`)
    client.py     `RapidClient`: call the served graph from Python, refusals as typed errors

Importing any of these builds nothing; `graphs/` holds only the thin entry files `langgraph.json`
points at.
"""
