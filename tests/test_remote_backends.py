"""The graph against real local OpenAI-compatible servers (`transformers serve`, same protocol as vLLM)."""

from __future__ import annotations

import asyncio

import pytest

from rapid_agent import BackendError, GenerationSettings, ModelResolver, RapidContext, build_rapid_graph
from rapid_agent.testing.local_servers import free_port

pytestmark = pytest.mark.slow

SHORT = GenerationSettings(max_new_tokens=8)


def resolver() -> ModelResolver:
    return ModelResolver({"captioner": SHORT, "reasoner": SHORT})


def test_graph_runs_on_served_captioner_and_reasoner(captioner_server, reasoner_server, circles_image):
    graph = build_rapid_graph(captioner_server.spec, reasoner_server.spec, resolver=resolver())
    inputs = [{"images": [circles_image], "question": f"How many circles? {i}"} for i in range(3)]

    results = graph.batch(inputs, config={"max_concurrency": 3})
    single = asyncio.run(graph.ainvoke(inputs[0]))

    for result in results + [single]:
        assert isinstance(result["captions"][0], str) and isinstance(result["reasoning"], str)
        assert [u["node"] for u in result["usage"]] == ["caption", "reason"]
        assert all(u["input_tokens"] > 0 for u in result["usage"])  # the server reported usage
        assert all(u["model"] in (captioner_server.model_path, reasoner_server.model_path) for u in result["usage"])


def test_served_reasoner_streams_tokens_into_the_graph(reasoner_server):
    graph = build_rapid_graph(reasoner=reasoner_server.spec, resolver=resolver())
    chunks, final = [], None
    for mode, payload in graph.stream(
        {"question": "What is 2+2?", "captions": ["a sum"]}, stream_mode=["messages", "values"]
    ):
        if mode == "messages" and payload[1]["langgraph_node"] == "reason":
            chunks.append(payload[0].content)
        elif mode == "values":
            final = payload
    assert len(chunks) > 1  # streamed chunks, not one final message (a non-streaming call yields exactly one)
    assert "".join(chunks) == final["reasoning"]


def test_per_call_context_can_swap_in_a_served_reasoner(reasoner_server, circles_image):
    from rapid_agent.testing import echo_captioner, fact_reasoner

    local = fact_reasoner({})
    graph = build_rapid_graph(echo_captioner("circles"), local, resolver=resolver())
    result = graph.invoke(
        {"images": [circles_image], "question": "How many?"}, context=RapidContext(reasoner=reasoner_server.spec)
    )
    assert local.calls == []
    assert result["usage"][-1]["model"] == reasoner_server.model_path


def test_unreachable_endpoint_is_a_backend_error_naming_the_model():
    spec = f"openai:some-model@http://127.0.0.1:{free_port()}/v1"
    graph = build_rapid_graph(reasoner=spec, resolver=resolver(), retry_policy=None)
    with pytest.raises(BackendError, match=r"reason: model some-model failed: \w*ConnectionError"):
        graph.invoke({"question": "q", "captions": ["c"]})
