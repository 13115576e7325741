"""Graph factories for `langgraph.json`: each returns this process's served graph of that name.

The server calls a factory when it needs the graph (a run, a schema); the graphs are built once, from
the `RAPID_*` settings read once (`rapid_agent.serving.process`).
"""

from langgraph.graph.state import CompiledStateGraph

from rapid_agent.serving.process import process_graphs


def rapid() -> CompiledStateGraph:
    return process_graphs().graph("rapid")


def rapid_recaption() -> CompiledStateGraph:
    return process_graphs().graph("rapid_recaption")


def look_and_reason() -> CompiledStateGraph:
    return process_graphs().graph("look_and_reason")


def describe_image() -> CompiledStateGraph:
    return process_graphs().graph("describe_image")
