"""The RAPID graphs served by `langgraph dev` with the repository's langgraph.json: runs, auth, bad input.

Models are scripted chat models behind real OpenAI-compatible HTTP servers (`ScriptedOpenAIServer`),
so answers are known; the server is LangGraph's own, started on a free port and stopped by its pid.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
import socket
import sqlite3
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.pregel.remote import RemoteGraph
from langgraph_sdk import get_client
from PIL import Image

from rapid_agent import as_tool
from rapid_agent.errors import BackendError, ConfigError, ImageInputError, InputError
from rapid_agent.images import from_data_url
from rapid_agent.serving.client import RapidClient, ServiceError
from rapid_agent.testing import ScriptedChatModel, ToolCallingScriptedModel, fact_reasoner
from rapid_agent.testing.langgraph_server import LangGraphDevServer
from rapid_agent.testing.openai_server import ScriptedOpenAIServer

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).resolve().parents[1] / "graphs" / "langgraph.json"
KEY, OTHER_KEY = "test-key-one", "test-key-two"
MAX_IMAGE_BYTES = 200_000


def _text(messages: list[BaseMessage]) -> str:
    return " ".join(m.text for m in messages)


def captioner_model() -> ScriptedChatModel:
    """Describes the circles; answers a re-caption request about their size."""
    return ScriptedChatModel(
        respond=lambda m: "The circles have a radius of 10 px." if "Measure the radius" in _text(m) else "Three red circles on white."
    )


def careful_reasoner() -> ScriptedChatModel:
    """Answers 'three'; when it may ask for a re-caption and the size is unknown, it asks."""

    def respond(messages: list[BaseMessage]) -> str:
        text = _text(messages)
        if "radius of 10" in text:
            return "The radius is given: \\boxed{10}"
        if "<recaption>" in text and "How large" in text:
            return "<recaption>Measure the radius of the circles.</recaption>"
        return "Counting the three red circles: \\boxed{three}"

    return ScriptedChatModel(respond=respond)


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


def colour_captioner() -> ScriptedChatModel:
    """Names the colour of the image it is shown, so a reused caption shows up as a wrong colour."""

    def respond(messages: list[BaseMessage]) -> str:
        urls = [p["image_url"]["url"] for p in messages[-1].content if isinstance(p, dict) and p.get("type") == "image_url"]
        return f"A {COLOURS[from_data_url(urls[0]).getpixel((4, 4))]} square." if urls else "No image."

    return ScriptedChatModel(respond=respond)


COLOURS = {(255, 0, 0): "red", (0, 0, 255): "blue", (0, 128, 0): "green"}


@pytest.fixture(scope="module")
def models():
    servers = {
        "colours": ScriptedOpenAIServer(colour_captioner(), model_name="colours"),
        "colour-reasoner": ScriptedOpenAIServer(
            fact_reasoner({f"{c} square": c for c in COLOURS.values()}), model_name="colour-reasoner"
        ),
        "captioner": ScriptedOpenAIServer(captioner_model(), model_name="captioner"),
        "reasoner": ScriptedOpenAIServer(fact_reasoner({"three red circles": "3"}), model_name="reasoner"),
        "careful": ScriptedOpenAIServer(careful_reasoner(), model_name="careful"),
        "broken": ScriptedOpenAIServer(fact_reasoner({}), model_name="broken", failure_rate=1.0),
    }
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    image = Image.new("RGB", (96, 64), "white")
    image.save(root / "circles.png")
    image.save(root.parent / "outside.png")
    (root / "escape.png").symlink_to(root.parent / "outside.png")
    return root


def serve_env(models, image_root: Path, **extra: str) -> dict[str, str]:
    return {
        "RAPID_API_KEYS": f"{KEY},{OTHER_KEY}",
        "RAPID_CAPTIONER": models["captioner"].spec,
        "RAPID_REASONER": models["reasoner"].spec,
        "RAPID_ALLOWED_SPECS": ",".join(models[name].spec for name in ("careful", "broken", "colours", "colour-reasoner")),
        "RAPID_IMAGE_ROOT": str(image_root),
        "RAPID_ALLOW_IMAGE_URLS": "1",
        "RAPID_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
        "RAPID_MAX_TEXT_CHARS": "2000",
        "RAPID_CALL_TIMEOUT_S": "300",  # a hang guard: no test relies on a model answering fast on a loaded CPU
    } | extra


@pytest.fixture(scope="module")
def server(models, image_root):
    with LangGraphDevServer(CONFIG, env=serve_env(models, image_root)) as running:
        yield running


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=300) as client:
        yield client


IMAGE = data_url(png(Image.new("RGB", (96, 64), "white")))


def test_served_run_with_context_override_then_stopped_by_pid(models, image_root, tiny_models):
    """Acceptance: langgraph dev with the repo's langgraph.json, an SDK run with an image, a question
    and a per-run reasoner override, then the server stopped by its process id. The server's own
    models are the tiny local ones (loaded in the server process); the override is a scripted endpoint."""
    captioner_path, reasoner_path = (str(p) for p in tiny_models)
    env = serve_env(models, image_root) | {
        "RAPID_CAPTIONER": f"hf:{captioner_path}", "RAPID_REASONER": f"hf:{reasoner_path}", "RAPID_CAPTION_MAX_NEW_TOKENS": "8", "RAPID_REASON_MAX_NEW_TOKENS": "8",
    }
    async def runs(url: str) -> list[dict]:
        client = get_client(url=url, api_key=KEY)
        question = {"images": [IMAGE], "question": "How many circles?"}
        override = client.runs.wait(None, "rapid", input=question, context={"reasoner": models["careful"].spec})
        return await asyncio.wait_for(asyncio.gather(override, client.runs.wait(None, "rapid", input=question)), 600)

    dev = LangGraphDevServer(CONFIG, env=env).start()
    try:
        out, plain = asyncio.run(runs(dev.url))
    finally:
        dev.stop()

    assert out["answer"] == "three"  # the scripted override answered
    assert [(u["node"], u["model"]) for u in out["usage"]] == [("caption", captioner_path), ("reason", "careful")]
    assert [(u["node"], u["model"]) for u in plain["usage"]] == [("caption", captioner_path), ("reason", reasoner_path)]
    assert all(0 < u["output_tokens"] <= 8 for u in plain["usage"])  # the tiny models really generated
    assert isinstance(plain["captions"][0], str) and isinstance(plain["reasoning"], str)
    assert dev.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(dev.pid, 0)
    with pytest.raises(OSError), socket.create_connection((httpx.URL(dev.url).host, httpx.URL(dev.url).port), 1):
        pass


def test_server_without_api_keys_refuses_to_start(models, image_root):
    with pytest.raises(BackendError, match="RAPID_API_KEYS is empty"):
        LangGraphDevServer(CONFIG, env=serve_env(models, image_root, RAPID_API_KEYS="")).start()


def test_served_runs_and_tools_read_the_caption_cache_setting(models, image_root, tmp_path):
    """RAPID_CAPTION_CACHE: a repeated run, and the describe_image tool over the same graph, are served
    from the SQLite file without asking the captioner again."""
    cache, before = tmp_path / "served-cache.sqlite", models["captioner"].requests
    question = {"images": [IMAGE], "question": "How many circles?"}

    async def runs(url: str) -> list[dict]:
        client = get_client(url=url, api_key=KEY)
        return [
            await client.runs.wait(None, "rapid", input=question),
            await client.runs.wait(None, "rapid", input=question),
            await client.runs.wait(None, "describe_image", input={"image": IMAGE, "question": "How many circles?"}),
        ]

    with LangGraphDevServer(CONFIG, env=serve_env(models, image_root, RAPID_CAPTION_CACHE=str(cache))) as dev:
        first, second, described = asyncio.run(asyncio.wait_for(runs(dev.url), 600))

    assert (first["perception_cached"], second["perception_cached"]) == (False, True)
    assert second["answer"] == "3" and described == {"caption": "Three red circles on white."}
    assert models["captioner"].requests - before == 1
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT COUNT(*) FROM cache").fetchone()[0] == 1


def test_updates_stream_node_by_node_and_local_paths_work_under_the_root(server):
    async def stream() -> list[tuple[str, object]]:
        client = get_client(url=server.url, api_key=KEY)
        return [
            (part.event, part.data)
            async for part in client.runs.stream(
                None, "rapid", input={"images": ["circles.png"], "question": "How many circles?"}, stream_mode="updates"
            )
        ]

    events = asyncio.run(stream())
    updates = [data for event, data in events if event == "updates"]
    assert [next(iter(u)) for u in updates] == ["prepare", "caption", "reason"]
    assert updates[-1]["reason"]["answer"] == "3"


def test_recaption_graph_asks_the_captioner_again(server, models):
    client = RapidClient(server.url, api_key=KEY, graph="rapid_recaption")
    out = client.invoke(
        {"images": [IMAGE], "question": "How large are the circles?"}, context={"reasoner": models["careful"].spec}
    )
    assert out["answer"] == "10" and out["round"] == 1, out
    assert out["recaption_requests"] == ["Measure the radius of the circles."]
    assert out["captions"] == ["Three red circles on white.", "The circles have a radius of 10 px."]
    # the plain graph never offers the loop: the same reasoner answers at once
    plain = RapidClient(server.url, api_key=KEY).invoke(
        {"images": [IMAGE], "question": "How large are the circles?"}, context={"reasoner": models["careful"].spec}
    )
    assert plain["answer"] == "three" and plain["round"] == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": "wrong"}, {"x-auth-scheme": "langsmith"}, {"x-auth-scheme": "langsmith", "x-api-key": "wrong"},
     {"authorization": f"Bearer {KEY}"}],
    ids=["no-key", "wrong-key", "studio-bypass", "studio-bypass-wrong-key", "key-in-wrong-header"],
)
def test_requests_without_a_valid_key_get_401(server, headers):
    body = {"assistant_id": "rapid", "input": {"images": [IMAGE], "question": "How many?"}}
    for method, path, json in [("POST", "/runs/wait", body), ("POST", "/assistants/search", {}), ("POST", "/threads", {})]:
        response = httpx.request(method, server.url + path, json=json, headers=headers, timeout=30)
        assert response.status_code == 401, (path, response.text)
        assert "API key" in response.json()["detail"]


def test_callers_may_not_create_assistants_and_see_only_their_own_threads(server, http):
    refused = http.post("/assistants", json={"graph_id": "rapid", "context": {"reasoner": "hf:someone/else"}})
    assert refused.status_code == 403 and "assistants.create is not allowed" in refused.json()["detail"]
    assert http.post("/runs/crons", json={"assistant_id": "rapid", "schedule": "* * * * *"}).status_code in (403, 404)

    thread = http.post("/threads", json={}).json()["thread_id"]
    run = http.post(f"/threads/{thread}/runs/wait",
                    json={"assistant_id": "rapid", "input": {"images": [IMAGE], "question": "How many?"}})
    assert run.status_code == 200 and run.json()["answer"] == "3"
    other = {"x-api-key": OTHER_KEY}
    assert http.get(f"/threads/{thread}", headers=other).status_code == 404
    assert thread not in [t["thread_id"] for t in http.post("/threads/search", json={}, headers=other).json()]
    assert http.get(f"/threads/{thread}").status_code == 200


def _bad_requests(models, image_root: Path) -> list[tuple[str, dict | bytes, str]]:
    noise = Image.frombytes("RGB", (300, 300), os.urandom(300 * 300 * 3))
    good = {"images": [IMAGE], "question": "How many?"}
    run = lambda input=good, **kw: {"assistant_id": "rapid", "input": input, **kw}  # noqa: E731
    return [
        ("malformed-json", b'{"assistant_id": "rapid", "input": {', "Invalid JSON"),
        ("no-assistant", {"input": good}, "assistant_id"),
        ("no-input", {"assistant_id": "rapid"}, "InputError: input must be an object"),
        ("no-question", run({"images": [IMAGE]}), "InputError: input.question is required"),
        ("question-not-text", run({"question": 42}), "input.question is required and must be a non-empty string"),
        ("question-too-long", run({"question": "x" * 2001}), "2001 characters; the limit is 2000 (RAPID_MAX_TEXT_CHARS)"),
        ("options-not-list", run(good | {"options": "A"}), "input.options must be a list of non-empty strings"),
        ("images-not-list", run(good | {"images": {"a": 1}}), "input.images must be a list of strings"),
        ("unknown-field", run(good | {"prompt": "ignore all"}), "unknown input field(s) ['prompt']"),
        ("too-many-images", run(good | {"images": [IMAGE] * 9}), "9 images given; the limit is max_images=8"),
        ("path-outside-root", run(good | {"images": ["../outside.png"]}), "outside the allowed image root"),
        ("absolute-path", run(good | {"images": ["/etc/passwd"]}), "outside the allowed image root"),
        ("symlink-escape", run(good | {"images": ["escape.png"]}), "outside the allowed image root"),
        ("private-url", run(good | {"images": ["http://10.0.0.7/cat.png"]}), "non-public address (10.0.0.7)"),
        ("loopback-url", run(good | {"images": ["http://127.0.0.1:9/cat.png"]}), "non-public address (127.0.0.1)"),
        ("oversized-image", run(good | {"images": [data_url(png(noise))]}), f"the limit is max_bytes={MAX_IMAGE_BYTES}"),
        ("pixel-bomb", run(good | {"images": [data_url(png_header_claiming(60_000, 60_000))]}), "the limit is max_pixels"),
        ("corrupt-image", run(good | {"images": [data_url(b"\x89PNG\r\n\x1a\n broken")]}), "image 0: not a readable image"),
        ("unknown-spec", run(context={"reasoner": "hf:some/other-model"}), "ConfigError: context.reasoner: model spec 'hf:some/other-model' is not allowed"),
        ("spec-not-text", run(context={"captioner": {"model": "x"}}), "context.captioner must be a model spec string"),
        ("unknown-context-field", run(context={"temperature": 2}), "unknown context field(s) ['temperature']"),
        ("too-many-rounds", run(context={"max_recaption_rounds": 50}), "from 0 to 3 (RAPID_ROUNDS_LIMIT), got 50"),
        ("unknown-preset", run(context={"prompt_preset": "jailbreak"}), "context.prompt_preset must be one of"),
        ("spec-via-configurable", run(config={"configurable": {"reasoner": "openai:gpt-x"}}), "model spec 'openai:gpt-x' is not allowed"),
        ("webhook", run(webhook="https://93.184.216.34/hook"), "webhooks are not accepted"),
        ("preset-object", run(context={"prompt_preset": {"name": "x"}}), "context.prompt_preset must be one of"),
        ("preset-list", run(context={"prompt_preset": ["blind"]}), "context.prompt_preset must be one of"),
        ("rounds-bool", run(context={"max_recaption_rounds": True}), "context.max_recaption_rounds must be an integer"),
        ("nul-in-path", run(good | {"images": ["circles\x00.png"]}), "ImageInputError: image 0"),
        ("only-image-tags", run(good | {"question": "<image 1>"}), "input.question has no text besides <image N> tags"),
        ("27-options", run(good | {"options": [f"o{i}" for i in range(27)]}), "27 options; the limit is 26"),
        ("command", run(command={"update": {"image_urls": ["http://127.0.0.1:9/x.png"]}, "goto": "caption"}),
         "commands (update, goto, resume) are not accepted"),
    ]


def test_each_bad_request_gets_a_clear_422_and_never_reaches_a_model(server, http, models, image_root):
    calls_before = {name: s.requests for name, s in models.items()}
    for name, body, expected in _bad_requests(models, image_root):
        if isinstance(body, bytes):
            response = http.post("/runs/wait", content=body, headers={"content-type": "application/json"})
        else:
            response = http.post("/runs/wait", json=body)
        assert response.status_code == 422, (name, response.status_code, response.text)
        assert expected in response.json()["detail"], (name, response.json()["detail"])
    assert {name: s.requests for name, s in models.items()} == calls_before
    assert server.alive()


def test_bad_requests_do_not_disturb_concurrent_good_runs(server, models, image_root):
    bad = [body for _, body, _ in _bad_requests(models, image_root) if isinstance(body, dict)]

    async def storm() -> tuple[list[dict], list[int]]:
        client = get_client(url=server.url, api_key=KEY)
        good = [client.runs.wait(None, "rapid", input={"images": [IMAGE], "question": f"How many? {i}"}) for i in range(6)]
        async with httpx.AsyncClient(base_url=server.url, timeout=300) as raw:
            refused = [raw.post("/runs/wait", json=body, headers={"x-api-key": KEY}) for body in bad]
            refused += [raw.post("/runs/wait", json=bad[0], headers={"x-api-key": "wrong"}) for _ in range(5)]
            results = await asyncio.wait_for(asyncio.gather(*good, *refused), 600)
        return results[: len(good)], [r.status_code for r in results[len(good):]]

    answers, statuses = asyncio.run(storm())
    assert [a["answer"] for a in answers] == ["3"] * 6
    assert statuses == [422] * len(bad) + [401] * 5


def test_client_raises_typed_errors(server, models, image_root):
    client = RapidClient(server.url, api_key=KEY)
    with pytest.raises(ImageInputError, match="outside the allowed image root"):
        client.invoke({"images": ["../outside.png"], "question": "How many?"})
    with pytest.raises(InputError, match="input.question is required"):
        client.invoke({"images": [IMAGE], "question": " "})
    with pytest.raises(ConfigError, match="is not allowed on this server"):
        asyncio.run(client.ainvoke({"images": [IMAGE], "question": "How many?"}, context={"reasoner": "tiny"}))
    # a run that fails inside the graph (the endpoint answers 500 to every call, retried) is a BackendError
    with pytest.raises(BackendError, match="reason: model broken failed: .*500.*injected error failure"):
        client.invoke({"images": [IMAGE], "question": "How many?"}, context={"reasoner": models["broken"].spec})
    with pytest.raises(ServiceError, match="HTTP 401") as refused:
        RapidClient(server.url, api_key="wrong").invoke({"images": [IMAGE], "question": "How many?"})
    assert refused.value.status == 401
    # local files are sent as base64 by the client, so a file outside the server's root works from here
    outside = image_root.parent / "outside.png"
    assert client.invoke({"images": [str(outside)], "question": "How many?"})["answer"] == "3"


def test_failed_run_streams_an_error_event_naming_the_model(server, models):
    async def stream() -> list[tuple[str, object]]:
        client = get_client(url=server.url, api_key=KEY)
        return [
            (part.event, part.data)
            async for part in client.runs.stream(
                None, "rapid", input={"images": [IMAGE], "question": "How many?"},
                context={"reasoner": models["broken"].spec}, stream_mode="updates",
            )
        ]

    events = asyncio.run(stream())
    assert events[-1][0] == "error"
    assert events[-1][1]["error"] == "BackendError"
    assert "reason: model broken failed" in events[-1][1]["message"]


def test_langchain_agent_uses_the_served_graph_as_a_tool(server, image_root):
    """An agent in this process calls the graph in the server's process, via the SDK client and via RemoteGraph."""
    for tool in (as_tool(RapidClient(server.url, api_key=KEY)),
                 as_tool(RemoteGraph("rapid", url=server.url, api_key=KEY))):
        agent_model = ToolCallingScriptedModel(
            script=[
                AIMessage(content="", tool_calls=[{
                    "name": "look_and_reason", "args": {"image": IMAGE, "question": "How many circles?"}, "id": "call_1",
                }]),
                "There are 3 circles.",
            ]
        )
        agent = create_agent(model=agent_model, tools=[tool])
        result = agent.invoke({"messages": [HumanMessage("How many circles are in my picture?")]})
        tool_message = next(m for m in result["messages"] if isinstance(m, ToolMessage))
        assert tool_message.content.startswith("Answer: 3"), tool_message.content
        assert "Three red circles on white." in tool_message.content
        assert result["messages"][-1].content == "There are 3 circles."


def colour_png(colour: str) -> str:
    return data_url(png(Image.new("RGB", (32, 32), colour)))


def test_runs_on_one_thread_answer_their_own_input(server, http, models):
    """Red then blue on one thread answers blue; explicit captions, then a run without, captions again."""
    thread = http.post("/threads", json={}).json()["thread_id"]
    context = {"captioner": models["colours"].spec, "reasoner": models["colour-reasoner"].spec}

    def ask(**input_: object) -> dict:
        response = http.post(f"/threads/{thread}/runs/wait",
                             json={"assistant_id": "rapid", "input": {"question": "Which colour?", **input_}, "context": context})
        assert response.status_code == 200, response.text
        return response.json()

    assert ask(images=[colour_png("red")])["answer"] == "red"
    blue = ask(images=[colour_png("blue")])
    assert blue["answer"] == "blue" and blue["captions"] == ["A blue square."]
    assert [u["node"] for u in blue["usage"]] == ["caption", "reason"]
    assert ask(images=[colour_png("red")], captions=["A green square."])["answer"] == "green"
    again = ask(images=[colour_png("red")])
    assert again["answer"] == "red" and again["captions"] == ["A red square."] and again["tentative_answer"] is None


@pytest.fixture
def canary():
    """A loopback HTTP server that must receive nothing."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    canary_server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=canary_server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{canary_server.server_port}/secret.png", hits
    canary_server.shutdown()


def test_nothing_but_a_checked_run_writes_graph_state(server, http, models, canary):
    """Run commands, runs from a checkpoint and thread state updates (with and without as_node, and
    supersteps at thread creation) are refused; the canary and the models receive nothing."""
    url, hits = canary
    thread = http.post("/threads", json={}).json()["thread_id"]
    good = {"assistant_id": "rapid", "input": {"images": [IMAGE], "question": "How many?"}}
    assert http.post(f"/threads/{thread}/runs/wait", json=good).json()["answer"] == "3"
    checkpoint_id = http.get(f"/threads/{thread}/state").json()["checkpoint"]["checkpoint_id"]
    calls_before = {name: s.requests for name, s in models.items()}
    hostile = {"image_urls": [url], "captions": ["x" * 200_000], "round": -12, "recaption_requests": ["more"] * 13}
    runs = {
        "command-goto": good | {"command": {"update": hostile, "goto": "caption"}},
        "command-only": {"assistant_id": "rapid", "command": {"update": hostile, "goto": "reason"}},
        "command-resume": {"assistant_id": "rapid", "command": {"resume": "x"}},
        "checkpoint-id": good | {"checkpoint_id": checkpoint_id},
        "checkpoint": good | {"checkpoint": {"checkpoint_id": checkpoint_id}},
        "resume-without-input": {"assistant_id": "rapid", "input": None},
    }
    for name, body in runs.items():
        response = http.post(f"/threads/{thread}/runs/wait", json=body)
        assert response.status_code == 422, (name, response.status_code, response.text)
    for name, body in {"as-node": {"values": hostile, "as_node": "prepare"}, "plain": {"values": hostile},
                       "as-caption": {"values": hostile, "as_node": "caption"}}.items():
        response = http.post(f"/threads/{thread}/state", json=body)
        assert response.status_code == 403 and "thread state updates are not accepted" in response.text, (name, response.text)
    created = http.post("/threads", json={"supersteps": [{"updates": [{"values": hostile, "as_node": "prepare"}]}]})
    assert "thread state updates are not accepted" in created.text, created.text
    for name in {thread, *re.findall(r"Thread (\S+) was created", created.text)}:
        assert url not in http.get(f"/threads/{name}/state").text
    assert {name: s.requests for name, s in models.items()} == calls_before
    assert hits == []
    # the thread still works, and answers its own input
    assert http.post(f"/threads/{thread}/runs/wait", json=good).json()["answer"] == "3"


@pytest.mark.parametrize("path", ["/metrics", "/info", "/docs", "/openapi.json"])
def test_meta_routes_are_disabled(server, path):
    """`disable_meta`: gone for everyone (without a key the auth layer may answer 401 first)."""
    anonymous = httpx.get(server.url + path, timeout=60)
    assert anonymous.status_code in (401, 404), (path, anonymous.status_code, anonymous.text[:200])
    with_key = httpx.get(server.url + path, headers={"x-api-key": KEY}, timeout=60)
    assert with_key.status_code == 404, (path, with_key.status_code, with_key.text[:200])
    assert httpx.get(server.url + "/ok", timeout=60).json() == {"ok": True}  # the health check stays
