"""MCP at `/mcp` on `langgraph dev` with the repository's langgraph.json: the official SDK client and a
LangChain agent (langchain-mcp-adapters) call the RAPID tools; auth and the run guard hold on this path.

Models are scripted chat models behind real OpenAI-compatible HTTP servers; the server is LangGraph's
own, started on a free port and stopped by its pid.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import zlib
from pathlib import Path

import httpx
import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_mcp_adapters.client import MultiServerMCPClient
from langgraph_sdk import get_client
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from rapid_agent.serving.tools import DESCRIPTIONS, TOOL_NAMES
from rapid_agent.testing import ToolCallingScriptedModel, echo_captioner, fact_reasoner
from rapid_agent.testing.langgraph_server import LangGraphDevServer
from rapid_agent.testing.openai_server import ScriptedOpenAIServer

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).resolve().parents[1] / "graphs" / "langgraph.json"
KEY = "mcp-test-key"
MAX_TEXT_CHARS, MAX_IMAGE_BYTES = 300, 4 * 1024 * 1024  # images over the MCP SDK's default 4 MiB body limit
CALL_TIMEOUT_S = 120  # hang guard only
CAPTION = "Three red circles on white."


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes that declare a huge PNG (a decompression bomb's shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


IMAGE = data_url(png(Image.new("RGB", (64, 48), "white")))


@pytest.fixture(scope="module")
def models():
    servers = {
        "captioner": ScriptedOpenAIServer(echo_captioner(CAPTION), model_name="captioner"),
        "reasoner": ScriptedOpenAIServer(fact_reasoner({"three red circles": "3"}), model_name="reasoner"),
        "other": ScriptedOpenAIServer(fact_reasoner({"three red circles": "three"}), model_name="other"),
    }
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("served-images")
    Image.new("RGB", (64, 48), "white").save(root / "circles.png")
    Image.new("RGB", (64, 48), "black").save(root.parent / "outside.png")
    (root / "escape.png").symlink_to(root.parent / "outside.png")
    return root


@pytest.fixture(scope="module")
def server(models, image_root):
    env = {
        "RAPID_API_KEYS": KEY,
        "RAPID_CAPTIONER": models["captioner"].spec,
        "RAPID_REASONER": models["reasoner"].spec,
        "RAPID_ALLOWED_SPECS": models["other"].spec,
        "RAPID_IMAGE_ROOT": str(image_root),
        "RAPID_ALLOW_IMAGE_URLS": "1",
        "RAPID_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
        "RAPID_MAX_TEXT_CHARS": str(MAX_TEXT_CHARS),
        "RAPID_CALL_TIMEOUT_S": "300",  # a hang guard, not a speed requirement
    }
    with LangGraphDevServer(CONFIG, env=env) as running:
        yield running


async def mcp_calls(url: str, calls: list[tuple[str, dict]], api_key: str | None = KEY) -> tuple[list, list]:
    """(listed tools, call results) of one SDK client session at `url`/mcp."""
    headers = {"x-api-key": api_key} if api_key else {}
    async with (
        httpx.AsyncClient(headers=headers, timeout=CALL_TIMEOUT_S) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write, _),
        ClientSession(read, write) as client,
    ):
        await asyncio.wait_for(client.initialize(), CALL_TIMEOUT_S)
        tools = (await client.list_tools()).tools
        return tools, [await asyncio.wait_for(client.call_tool(name, args), CALL_TIMEOUT_S) for name, args in calls]


def test_sdk_client_lists_and_calls_the_tools_over_http(server, models, image_root):
    good = {"image": IMAGE, "question": "How many circles?"}
    tools, (answer, from_path, other, described) = asyncio.run(
        mcp_calls(server.url, [
            ("look_and_reason", good),
            ("look_and_reason", good | {"image": "circles.png", "options": ["two", "three"]}),
            ("look_and_reason", good | {"reasoner": models["other"].spec}),
            ("describe_image", good),
        ])
    )
    assert [(t.name, t.description) for t in tools] == [(name, DESCRIPTIONS[name]) for name in TOOL_NAMES]
    assert not answer.isError and answer.structuredContent == {
        "answer": "3", "caption": CAPTION,
        "reasoning": "The description mentions three red circles, so the answer is \\boxed{3}.",
        "vote": None,  # one reasoner sample: no vote
    }
    assert json.loads(answer.content[0].text) == answer.structuredContent
    assert not from_path.isError and from_path.structuredContent["answer"] == "3"
    assert not other.isError and other.structuredContent["answer"] == "three"  # the per-call reasoner
    assert not described.isError and described.structuredContent == {"caption": CAPTION}


def test_mcp_without_a_valid_key_is_401(server):
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "look_and_reason", "arguments": {"image": IMAGE, "question": "How many?"}}}
    accept = {"accept": "application/json, text/event-stream"}
    for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": ""}):
        for message in (initialize, call):
            response = httpx.post(f"{server.url}/mcp", json=message, headers=accept | headers, timeout=30)
            assert response.status_code == 401, (headers, response.text)
            assert "API key" in response.json()["detail"]
    with pytest.raises(Exception) as refused:  # the SDK client fails loudly, not silently
        asyncio.run(mcp_calls(server.url, [], api_key="wrong"))
    assert "401" in repr(refused.value.exceptions[0] if hasattr(refused.value, "exceptions") else refused.value)


def _escape(root: Path) -> str:
    return str(root.parent / "outside.png")


# (tool arguments, the same request as the `rapid` graph's input and context); None: no RAPID form
GUARD_CASES = {
    "outside root (absolute)": (lambda r: {"image": _escape(r)}, lambda r: {"images": [_escape(r)]}),
    "outside root (..)": (lambda r: {"image": "../outside.png"}, lambda r: {"images": ["../outside.png"]}),
    "outside root (symlink)": (lambda r: {"image": "escape.png"}, lambda r: {"images": ["escape.png"]}),
    "loopback URL": (lambda r: {"image": "http://127.0.0.1:9/a.png"}, lambda r: {"images": ["http://127.0.0.1:9/a.png"]}),
    "private URL": (lambda r: {"image": "http://10.1.2.3/a.png"}, lambda r: {"images": ["http://10.1.2.3/a.png"]}),
    "corrupt image": (lambda r: {"image": data_url(b"not a png")}, lambda r: {"images": [data_url(b"not a png")]}),
    "oversized image": (  # a body over 4 MiB: refused by the guard, with its message, not by the transport
        lambda r: {"image": data_url(b"\0" * (MAX_IMAGE_BYTES + 1))},
        lambda r: {"images": [data_url(b"\0" * (MAX_IMAGE_BYTES + 1))]},
    ),
    "decompression bomb": (
        lambda r: {"image": data_url(png_header_claiming(60_000, 60_000))},
        lambda r: {"images": [data_url(png_header_claiming(60_000, 60_000))]},
    ),
    "over-long question": (lambda r: {"question": "q" * (MAX_TEXT_CHARS + 1)}, lambda r: {"question": "q" * (MAX_TEXT_CHARS + 1)}),
    "blank question": (lambda r: {"question": "   "}, lambda r: {"question": "   "}),
    "too many options": (lambda r: {"options": [f"o{i}" for i in range(27)]}, lambda r: {"options": [f"o{i}" for i in range(27)]}),
    "over-long option": (lambda r: {"options": ["a", "b" * 301]}, lambda r: {"options": ["a", "b" * 301]}),
    "spec outside the allowlist": (
        lambda r: {"reasoner": "openai:evil@http://203.0.113.9/v1"},
        lambda r: {"context": {"reasoner": "openai:evil@http://203.0.113.9/v1"}},
    ),
    "wrong type": (lambda r: {"image": 3}, None),
    "question missing": (lambda r: {"question": None}, None),
    "list of images": (lambda r: {"images": [IMAGE]}, None),
    "internal state (captions)": (lambda r: {"captions": ["Seven blue squares."]}, None),
    "internal state (round)": (lambda r: {"round": 3}, None),
}


@pytest.mark.parametrize("case", list(GUARD_CASES))
def test_every_runs_api_refusal_is_the_same_mcp_refusal(server, image_root, case):
    """The runs API refuses (422) the request on the `rapid` graph and on the tool's own graph; MCP refuses
    the tool call with an error result naming the same error, word for word."""
    tool_args, rapid_form = GUARD_CASES[case]
    args = {"image": IMAGE, "question": "How many circles?"} | tool_args(image_root)
    args = {k: v for k, v in args.items() if v is not None}
    runs = httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=CALL_TIMEOUT_S)

    def refusal(assistant: str, input_: dict, context: dict | None = None) -> str:
        body = {"assistant_id": assistant, "input": input_} | ({"context": context} if context else {})
        response = runs.post("/runs/wait", json=body)
        assert response.status_code == 422, (assistant, response.status_code, response.text[:300])
        return response.json()["detail"]

    over_tool_graph = refusal("look_and_reason", args)
    _, (result,) = asyncio.run(mcp_calls(server.url, [("look_and_reason", args)]))
    assert result.isError and result.content[0].text == over_tool_graph
    assert over_tool_graph.split(":")[0] in ("InputError", "ImageInputError", "ConfigError")
    if rapid_form is not None:
        form = {"images": [IMAGE], "question": "How many circles?"} | rapid_form(image_root)
        context = form.pop("context", None)
        assert refusal("rapid", form, context) == over_tool_graph


def test_refusals_and_unknown_tools_do_not_stop_other_clients(server):
    """One client sends every kind of bad call while another works; both get answers, none hangs."""
    bad = [
        ("look_and_reason", {"image": "../outside.png", "question": "q"}),
        ("paint_image", {"image": IMAGE}),
        ("look_and_reason", {"image": IMAGE, "question": "q" * (MAX_TEXT_CHARS + 1)}),
        ("describe_image", {"image": IMAGE}),
        ("look_and_reason", {}),
    ] * 2
    good = [("describe_image", {"image": IMAGE, "question": "What is shown?"})] * 3

    async def both() -> tuple:
        return await asyncio.gather(mcp_calls(server.url, bad), mcp_calls(server.url, good))

    (_, refused), (_, answered) = asyncio.run(both())
    assert all(result.isError for result in refused)
    assert "unknown tool 'paint_image'" in refused[1].content[0].text
    assert all(not result.isError and result.structuredContent == {"caption": CAPTION} for result in answered)


def test_no_mcp_call_leaves_state_on_the_server(server):
    """MCP calls run statelessly: the caller owns no thread or cron afterwards, no assistant appears, and the
    store stays off."""
    asyncio.run(mcp_calls(server.url, [
        ("look_and_reason", {"image": IMAGE, "question": "How many?"}),
        ("describe_image", {"image": IMAGE, "question": "How many?", "captions": ["x"]}),
    ]))

    async def server_state() -> tuple:
        client = get_client(url=server.url, api_key=KEY)
        return await client.threads.search(limit=100), await client.assistants.search(limit=100)

    threads, assistants = asyncio.run(server_state())
    assert threads == []
    assert sorted(a["graph_id"] for a in assistants) == sorted(["rapid", "rapid_recaption", *TOOL_NAMES])
    with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=30) as http:
        assert http.post("/store/items/search", json={"namespace_prefix": []}).status_code == 404
        assert http.post("/runs/crons/search", json={}).status_code in (403, 404)


def test_langchain_agent_answers_with_the_served_tools_through_the_adapters(server):
    connection = {"transport": "streamable_http", "url": f"{server.url}/mcp", "headers": {"x-api-key": KEY}}
    call = {"name": "look_and_reason", "args": {"image": "circles.png", "question": "How many circles?"}, "id": "c1"}
    model = ToolCallingScriptedModel(script=[AIMessage(content="", tool_calls=[call]), "There are 3 circles."])

    async def run() -> dict:
        tools = await MultiServerMCPClient({"rapid": connection}).get_tools()
        agent = create_agent(model=model, tools=tools)
        return await asyncio.wait_for(agent.ainvoke({"messages": [HumanMessage("How many circles?")]}), CALL_TIMEOUT_S)

    result = asyncio.run(run())
    assert model.bound_tool_names == list(TOOL_NAMES)
    tool_message = next(m for m in result["messages"] if isinstance(m, ToolMessage))
    assert tool_message.status == "success" and json.loads(tool_message.text)["answer"] == "3"
    assert tool_message in model.calls[1]
