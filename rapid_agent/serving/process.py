"""This process's serving settings and graphs: the environment is read once, the graphs built once.

LangGraph's server imports the entry files in `graphs/` (auth hook, graph factories, the `/mcp` app);
each asks here, so they share one `ServeSettings` and one set of `ServedGraphs` (one resolver: local
models load once).

LangGraph's server runs at most `N_JOBS_PER_WORKER` runs at once, and `langgraph dev` sets it to 1
unless started with `--n-jobs-per-worker N` (its help says 10); the start-up says so
(`concurrency_notice`), since RAPID's runs spend their time waiting on model servers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
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
    if notice := concurrency_notice():
        print(notice, file=sys.stderr, flush=True)
    return graphs


def concurrency_notice(env: Mapping[str, str] = os.environ) -> str | None:
    """One line when LangGraph's server in this process runs a single run at a time, else None."""
    if env.get("N_JOBS_PER_WORKER", "").strip() != "1":
        return None
    return (
        "rapid-agent: this server runs one run at a time (N_JOBS_PER_WORKER=1, langgraph dev's default); "
        "start it with --n-jobs-per-worker N for N concurrent runs (docs/serving.md, 'Throughput (P5)')"
    )
