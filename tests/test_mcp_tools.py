"""The RAPID tools (rapid_agent.serving.tools, rapid_agent.serving.mcp): tool graphs, strict arguments, and the MCP server over an in-memory
transport with the official SDK client (the HTTP and stdio transports: test_mcp_http.py, test_mcp_stdio.py)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path

import pytest
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from mcp.shared.memory import create_connected_server_and_client_session
from PIL import Image
from typing_extensions import TypedDict

from rapid_agent import build_rapid_graph
from rapid_agent.errors import InputError
from rapid_agent.models.spec import ModelResolver
from rapid_agent.serving.guard import check_tool_call, tool_run_request
from rapid_agent.serving.mcp.server import build_server, graph_runner, tool_definitions
from rapid_agent.serving.settings import ServeSettings
from rapid_agent.serving.tools import DESCRIPTIONS, TOOL_NAMES, build_tool_graph, to_rapid_request
from rapid_agent.testing import ScriptedChatModel, echo_captioner, fact_reasoner

CONFIG = Path(__file__).resolve().parents[1] / "graphs" / "langgraph.json"


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


IMAGE = data_url(Image.new("RGB", (32, 24), "white"))


class NamedModels(ModelResolver):
    """Resolves spec strings to the given chat models (for per-call reasoner choices without servers)."""

    def __init__(self, models: dict[str, ScriptedChatModel]) -> None:
        super().__init__()
        self.models = models

    def resolve(self, model, role):
        return self.models[model] if isinstance(model, str) else model


@pytest.fixture
def models() -> dict[str, ScriptedChatModel]:
    return {
        "captioner": echo_captioner("Three red circles on white."),
        "reasoner": fact_reasoner({"three red circles": "3"}),
        "other": fact_reasoner({"three red circles": "three"}),
    }


@pytest.fixture
def rapid(models):
    return build_rapid_graph("captioner", "reasoner", resolver=NamedModels(models))


def _text(messages: list[BaseMessage]) -> str:
    return " ".join(m.text for m in messages)


def test_tool_definitions_describe_every_argument_and_result():
    tools = {tool.name: tool for tool in tool_definitions()}
    assert list(tools) == list(TOOL_NAMES) == ["look_and_reason", "describe_image"]
    look, describe = tools["look_and_reason"], tools["describe_image"]
    assert look.inputSchema["required"] == describe.inputSchema["required"] == ["image", "question"]
    assert set(look.inputSchema["properties"]) == {"image", "question", "options", "reasoner", "samples"}
    assert set(describe.inputSchema["properties"]) == {"image", "question"}
    for tool in tools.values():
        assert tool.description == DESCRIPTIONS[tool.name]
        assert tool.inputSchema["additionalProperties"] is False
        assert all(prop.get("description") for prop in tool.inputSchema["properties"].values())
        assert tool.annotations.readOnlyHint is True
    assert set(look.outputSchema["properties"]) == {"answer", "caption", "reasoning", "vote"}
    assert set(describe.outputSchema["properties"]) == {"caption"}


def test_served_tool_descriptions_are_the_tools_own():
    """langgraph.json registers the tool graphs under the tool names with the same descriptions."""
    graphs = json.loads(CONFIG.read_text())["graphs"]
    for name in TOOL_NAMES:
        assert graphs[name] == {"path": f"graphs.rapid:{name}", "description": DESCRIPTIONS[name]}


def test_look_and_reason_answers_with_caption_and_reasoning(rapid, models):
    out = build_tool_graph(rapid, "look_and_reason").invoke({"image": IMAGE, "question": "How many circles?"})
    assert out["answer"] == "3"
    assert out["caption"] == "Three red circles on white."
    assert "\\boxed{3}" in out["reasoning"]
    assert "Three red circles on white." in _text(models["reasoner"].calls[0])
    assert "How many circles?" in _text(models["captioner"].calls[0])


def test_look_and_reason_with_options_and_a_reasoner_per_call(rapid, models):
    graph = build_tool_graph(rapid, "look_and_reason")
    out = asyncio.run(
        graph.ainvoke({"image": IMAGE, "question": "How many?", "options": ["two", "three"], "reasoner": "other"})
    )
    assert out["answer"] == "three"  # from the per-call reasoner
    assert models["reasoner"].calls == [] and len(models["other"].calls) == 1
    assert "B. three" in _text(models["other"].calls[0])


def test_look_and_reason_samples_vote_and_say_how(rapid, models):
    graph = build_tool_graph(rapid, "look_and_reason")
    out = graph.invoke({"image": IMAGE, "question": "How many circles?", "samples": 3})
    assert out["answer"] == "3" and len(models["reasoner"].calls) == 3
    assert out["vote"] == {"outcome": "majority", "counts": [{"answer": "3", "votes": 3}]}
    assert graph.invoke({"image": IMAGE, "question": "How many circles?"})["vote"] is None


def test_describe_image_never_calls_the_reasoner(rapid, models):
    out = build_tool_graph(rapid, "describe_image").invoke({"image": IMAGE, "question": "What is shown?"})
    assert out == {"caption": "Three red circles on white."}
    assert models["reasoner"].calls == [] and len(models["captioner"].calls) == 1


@pytest.mark.parametrize("tool", TOOL_NAMES)
def test_a_tool_graph_inside_a_checkpointed_run_writes_only_its_own_state(rapid, models, tool):
    """The pipeline runs as its own top-level run: no checkpoint of it lands in the caller's thread, and
    describe_image's stop before `reason` does not stop (interrupt) the caller."""

    class Parent(TypedDict, total=False):
        image: str
        question: str
        caption: str

    builder = StateGraph(Parent)
    builder.add_node("tool", build_tool_graph(rapid, tool))
    builder.add_edge(START, "tool")
    saver = InMemorySaver()
    parent = builder.compile(checkpointer=saver)
    out = parent.invoke({"image": IMAGE, "question": "How many?"}, {"configurable": {"thread_id": "t"}})
    assert out["caption"] == "Three red circles on white."
    assert "__interrupt__" not in out
    channels = {key[2] for key in saver.blobs} | {w[1] for ws in saver.writes.values() for w in ws.values()}
    assert "caption" in channels  # the tool graph's own state is checkpointed ...
    assert not channels & {"captions", "image_urls", "usage", "round"}, channels  # ... the pipeline's is not


@pytest.mark.parametrize(
    ("tool", "arguments", "named"),
    [
        ("look_and_reason", {"image": 3, "question": "q"}, "image"),
        ("look_and_reason", {"image": IMAGE, "question": ["q"]}, "question"),
        ("look_and_reason", {"image": IMAGE}, "question"),
        ("look_and_reason", {"image": "", "question": "q"}, "image"),
        ("look_and_reason", {"image": IMAGE, "question": "q", "options": "A or B"}, "options"),
        ("look_and_reason", {"image": IMAGE, "question": "q", "reasoner": 7}, "reasoner"),
        ("look_and_reason", {"images": [IMAGE], "question": "q"}, "images"),
        # the pipeline's internal state is not an argument: captions would skip perception
        ("look_and_reason", {"image": IMAGE, "question": "q", "captions": ["made up"]}, "captions"),
        ("describe_image", {"image": IMAGE, "question": "q", "image_urls": ["data:"]}, "image_urls"),
        ("describe_image", {"image": IMAGE, "question": "q", "reasoner": "other"}, "reasoner"),
        ("describe_image", {"image": IMAGE, "question": "q", "samples": 3}, "samples"),
        ("look_and_reason", {"image": IMAGE, "question": "q", "samples": 0}, "samples: Input should be greater"),
        ("look_and_reason", {"image": IMAGE, "question": "q", "samples": "3"}, "samples: Input should be a valid integer"),
        ("describe_image", "How many?", "arguments"),
        ("look_up", {"image": IMAGE, "question": "q"}, "unknown tool 'look_up'"),
    ],
)
def test_tool_arguments_are_strict(tool, arguments, named):
    with pytest.raises(InputError, match=named):
        to_rapid_request(tool, arguments)


def test_tool_graph_input_cannot_write_the_pipelines_state(rapid, models):
    """In process, LangGraph drops keys outside the tool's input schema (the servers refuse them, see
    below): given captions neither skip perception nor reach the reasoner."""
    graph = build_tool_graph(rapid, "look_and_reason")
    out = graph.invoke({"image": IMAGE, "question": "How many?", "captions": ["Seven blue squares."], "round": 5})
    assert out["caption"] == "Three red circles on white." and out["answer"] == "3"
    assert len(models["captioner"].calls) == 1
    assert "Seven" not in _text(models["reasoner"].calls[0])
    with pytest.raises(InputError, match="image"):
        graph.invoke({"image": 3, "question": "q"})
    assert len(models["captioner"].calls) == 1  # refused before any model call


def test_a_tool_call_is_guarded_as_the_rapid_run_it_makes(tmp_path):
    settings = ServeSettings(max_text_chars=50, allowed_specs=("openai:big@http://gpu:8000/v1",), image_root=tmp_path)
    inputs, context = tool_run_request("look_and_reason", {"image": "a.png", "question": "q", "options": ["x"]}, None)
    assert inputs == {"images": ["a.png"], "question": "q", "options": ["x"]} and context is None
    _, context = tool_run_request("look_and_reason", {"image": "a.png", "question": "q", "reasoner": "r"}, {"x": 1})
    assert context == {"x": 1, "reasoner": "r"}
    check_tool_call("look_and_reason", {"image": IMAGE, "question": "q", "reasoner": "openai:big@http://gpu:8000/v1"}, settings)
    with pytest.raises(InputError, match="input.question has 51 characters; the limit is 50"):
        check_tool_call("describe_image", {"image": IMAGE, "question": "q" * 51}, settings)
    with pytest.raises(Exception, match="context.reasoner: model spec 'openai:evil@http://gpu:8000/v1' is not allowed"):
        check_tool_call("look_and_reason", {"image": IMAGE, "question": "q", "reasoner": "openai:evil@http://gpu:8000/v1"}, settings)
    with pytest.raises(Exception, match="outside the allowed image root"):
        check_tool_call("look_and_reason", {"image": "../secret.png", "question": "q"}, settings)
    _, context = tool_run_request("look_and_reason", {"image": "a.png", "question": "q", "samples": 3}, None)
    assert context == {"reasoner_samples": 3}
    check_tool_call("look_and_reason", {"image": IMAGE, "question": "q", "samples": 5}, settings)
    with pytest.raises(Exception, match=r"context.reasoner_samples must be an integer from 1 to 5 \(RAPID_MAX_REASONER_SAMPLES\), got 6"):
        check_tool_call("look_and_reason", {"image": IMAGE, "question": "q", "samples": 6}, settings)


def test_mcp_server_calls_refusals_and_failures_over_the_sdk_client(rapid, models):
    """The official SDK client against the server over in-memory streams: results, error results, and the
    server answering again after each error."""
    settings = ServeSettings(captioner="captioner", reasoner="reasoner", allowed_specs=("broken",), max_text_chars=50)
    graphs = {name: build_tool_graph(rapid, name) for name in TOOL_NAMES}
    server = build_server(graph_runner(graphs), check=lambda tool, args: check_tool_call(tool, args, settings))
    models["broken"] = ScriptedChatModel(respond=lambda m: "", fail_times=100, error=ValueError)

    async def session_calls() -> list:
        async with create_connected_server_and_client_session(server) as client:
            listed = [tool.name for tool in (await client.list_tools()).tools]
            calls = [
                ("look_and_reason", {"image": IMAGE, "question": "How many?"}),
                ("look_and_reason", {"image": 3, "question": "How many?"}),
                ("describe_image", {"image": IMAGE, "question": "q" * 51}),
                ("look_and_reason", {"image": IMAGE, "question": "How many?", "reasoner": "broken"}),
                ("paint", {"image": IMAGE}),
                ("describe_image", {"image": IMAGE, "question": "What is shown?"}),
            ]
            results = [await asyncio.wait_for(client.call_tool(name, args), 60) for name, args in calls]
            return [listed, *results]

    listed, ok, wrong_type, too_long, broken, unknown, again = asyncio.run(session_calls())
    assert listed == ["look_and_reason", "describe_image"]
    assert not ok.isError and ok.structuredContent["answer"] == "3"
    assert json.loads(ok.content[0].text) == ok.structuredContent
    assert wrong_type.isError and wrong_type.content[0].text.startswith("InputError: bad arguments for look_and_reason: image")
    assert too_long.isError and too_long.content[0].text == (
        "InputError: input.question has 51 characters; the limit is 50 (RAPID_MAX_TEXT_CHARS)"
    )
    assert broken.isError and broken.content[0].text.startswith("BackendError: reason: model")
    assert unknown.isError and "unknown tool 'paint'" in unknown.content[0].text
    assert not again.isError and again.structuredContent == {"caption": "Three red circles on white."}
