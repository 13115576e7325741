"""This process's serving settings and graphs: the environment is read once, the graphs built once.

LangGraph's server imports the entry files in `graphs/` (auth hook, graph factories, the `/mcp` app);
each asks here, so they share one `ServeSettings` and one set of `ServedGraphs` (one resolver: local
models load once).
"""

from __future__ import annotations

from functools import cache

from rapid_agent.serving.graphs import ServedGraphs
from rapid_agent.serving.settings import ServeSettings


@cache
def process_settings() -> ServeSettings:
    """`ServeSettings.from_env()`, read the first time it is asked for."""
    return ServeSettings.from_env()


@cache
def process_graphs() -> ServedGraphs:
    """The served graphs of `process_settings()`; their models are checked (and the default-model notice
    printed) on first use, so a wrong served model fails the server's start-up."""
    graphs = ServedGraphs(process_settings())
    graphs.check_models()
    return graphs
