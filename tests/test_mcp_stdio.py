"""`python -m rapid_agent.serving.mcp` as a spawned stdio server: the official SDK client and a LangChain agent
(through langchain-mcp-adapters) call it; bad input gets MCP error results and the server keeps serving.

Models are scripted chat models behind real OpenAI-compatible HTTP servers, named by spec on the CLI.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_mcp_adapters.client import MultiServerMCPClient
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from PIL import Image

from rapid_agent.serving.tools import TOOL_NAMES
from rapid_agent.testing import ToolCallingScriptedModel, echo_captioner, fact_reasoner
from rapid_agent.testing.openai_server import ScriptedOpenAIServer

pytestmark = pytest.mark.slow

CALL_TIMEOUT_S = 120  # hang guard only


@pytest.fixture(scope="module")
def models():
    servers = {
        "captioner": ScriptedOpenAIServer(echo_captioner("Three red circles on white."), model_name="captioner"),
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
    root = tmp_path_factory.mktemp("pictures")
    Image.new("RGB", (64, 48), "white").save(root / "circles.png")
    Image.new("RGB", (64, 48), "black").save(root.parent / "outside.png")
    (root / "escape.png").symlink_to(root.parent / "outside.png")
    return root


def server_env(**extra: str) -> dict[str, str]:
    """This environment without RAPID_* settings (the flags configure the server), plus `extra`."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RAPID_")} | {"HF_HUB_OFFLINE": "1"} | extra


def cli_args(models, image_root: Path) -> list[str]:
    return [
        "-m", "rapid_agent.serving.mcp", "--captioner", models["captioner"].spec, "--reasoner", models["reasoner"].spec,
        "--allowed-root", str(image_root), "--allowed-specs", models["other"].spec, "--allow-image-urls",
    ]


def test_sdk_client_calls_the_stdio_server_and_every_refusal_is_an_error_result(models, image_root):
    params = StdioServerParameters(
        command=sys.executable, args=cli_args(models, image_root), env=server_env(RAPID_MAX_TEXT_CHARS="300")
    )
    good = {"image": "circles.png", "question": "How many circles?"}
    calls = [
        ("look_and_reason", good),
        ("look_and_reason", good | {"image": str(image_root / "circles.png"), "options": ["two", "three"],
                                    "reasoner": models["other"].spec}),
        ("describe_image", good),
        ("look_and_reason", good | {"image": str(image_root.parent / "outside.png")}),
        ("look_and_reason", good | {"image": "../outside.png"}),
        ("look_and_reason", good | {"image": "escape.png"}),
        ("look_and_reason", good | {"image": "http://127.0.0.1:9/chart.png"}),
        ("look_and_reason", good | {"image": "http://10.1.2.3/chart.png"}),
        ("look_and_reason", good | {"question": "q" * 301}),
        ("look_and_reason", good | {"reasoner": "openai:evil@http://203.0.113.9/v1"}),
        ("look_and_reason", good | {"question": 42}),
        ("describe_image", good | {"captions": ["Seven blue squares."]}),
        ("paint_image", good),
        ("describe_image", good),
    ]

    async def session() -> tuple[list[str], list]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
            await asyncio.wait_for(client.initialize(), CALL_TIMEOUT_S)
            tools = [tool.name for tool in (await client.list_tools()).tools]
            return tools, [await asyncio.wait_for(client.call_tool(n, a), CALL_TIMEOUT_S) for n, a in calls]

    tools, results = asyncio.run(session())
    assert tools == list(TOOL_NAMES)
    answer, other, described, *refused, unknown, again = results
    assert not answer.isError and answer.structuredContent == {
        "answer": "3", "caption": "Three red circles on white.",
        "reasoning": "The description mentions three red circles, so the answer is \\boxed{3}.",
        "vote": None,  # one reasoner sample: no vote
    }
    assert not other.isError and other.structuredContent["answer"] == "three"  # the per-call reasoner
    assert not described.isError and described.structuredContent == {"caption": "Three red circles on white."}
    texts = [result.content[0].text for result in refused]
    assert all(result.isError for result in refused), texts
    outside, dotdot, symlink, loopback, private, long_question, spec, wrong_type, internal = texts
    assert outside.startswith("ImageInputError: image 0: path") and "outside the allowed image root" in outside
    assert "outside the allowed image root" in dotdot and "outside the allowed image root" in symlink
    assert loopback.startswith("ImageInputError") and "127.0.0.1" in loopback
    assert private.startswith("ImageInputError") and "10.1.2.3" in private
    assert long_question == "InputError: input.question has 301 characters; the limit is 300 (RAPID_MAX_TEXT_CHARS)"
    assert spec.startswith("ConfigError: context.reasoner: model spec 'openai:evil@http://203.0.113.9/v1' is not allowed")
    assert wrong_type.startswith("InputError: bad arguments for look_and_reason: question")
    assert internal.startswith("InputError: bad arguments for describe_image: captions")
    assert unknown.isError and "unknown tool 'paint_image'" in unknown.content[0].text
    assert not again.isError and again.structuredContent == {"caption": "Three red circles on white."}


def test_langchain_agent_answers_with_the_stdio_tools_through_the_adapters(models, image_root):
    connection = {
        "transport": "stdio", "command": sys.executable, "args": cli_args(models, image_root), "env": server_env(),
    }
    call = {"name": "look_and_reason", "args": {"image": "circles.png", "question": "How many circles?"}, "id": "call_1"}
    model = ToolCallingScriptedModel(script=[AIMessage(content="", tool_calls=[call]), "There are 3 circles."])

    async def run() -> dict:
        tools = await MultiServerMCPClient({"rapid": connection}).get_tools()
        agent = create_agent(model=model, tools=tools)
        question = HumanMessage("How many circles are in circles.png?")
        return await asyncio.wait_for(agent.ainvoke({"messages": [question]}), CALL_TIMEOUT_S)

    result = asyncio.run(run())
    assert model.bound_tool_names == list(TOOL_NAMES)
    tool_message = next(m for m in result["messages"] if isinstance(m, ToolMessage))
    assert tool_message.name == "look_and_reason" and tool_message.status == "success"
    assert json.loads(tool_message.text)["answer"] == "3"  # the pipeline's answer, through the MCP tool
    assert tool_message in model.calls[1]  # the agent's model read the tool result before answering
    assert result["messages"][-1].text == "There are 3 circles."


def test_cli_refuses_bad_settings_with_a_clear_message(tmp_path):
    missing = tmp_path / "missing"
    done = subprocess.run(
        [sys.executable, "-m", "rapid_agent.serving.mcp", "--allowed-root", str(missing)],
        env=server_env(), capture_output=True, text=True, timeout=CALL_TIMEOUT_S, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert f"RAPID_IMAGE_ROOT: Value error, '{missing}' is not a folder" in done.stderr


def test_stdout_carries_the_protocol_alone():
    """What a library prints (Python or native code) goes to stderr, not into the protocol stream."""
    script = (
        "import os, anyio\n"
        "from rapid_agent.serving.mcp.__main__ import protocol_stdout\n"
        "out = protocol_stdout()\n"
        "print('stray print')\n"
        "os.write(1, b'stray native write\\n')\n"
        "async def send():\n"
        "    await out.write('{\"jsonrpc\": \"2.0\"}\\n')\n"
        "    await out.flush()\n"
        "anyio.run(send)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=server_env(), capture_output=True, text=True,
                          timeout=CALL_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout == '{"jsonrpc": "2.0"}\n'
    assert "stray print" in done.stderr and "stray native write" in done.stderr


def test_every_flag_sets_the_setting_of_the_same_meaning(tmp_path):
    """Each CLI flag lands in the `ServeSettings` field it documents (a flag naming a removed setting
    would fail here, not at a user's first start)."""
    from rapid_agent.serving.mcp.__main__ import _FLAGS, parse_args, settings_env
    from rapid_agent.serving.settings import ServeSettings

    values = {
        "captioner": "tiny", "reasoner": "tiny", "allowed_root": str(tmp_path), "allowed_specs": "tiny",
        "prompt_preset": "paper-train", "max_recaption_rounds": "2", "caption_max_new_tokens": "77",
        "reason_max_new_tokens": "99", "call_timeout_s": "7.5", "caption_cache": str(tmp_path / "c.sqlite"),
    }
    argv = [f"--{flag.replace('_', '-')}" for flag in _FLAGS if flag not in values] + [
        arg for flag, value in values.items() for arg in (f"--{flag.replace('_', '-')}", value)
    ]
    settings = ServeSettings.from_env(settings_env(parse_args(argv), environ={}))
    assert settings.caption_max_new_tokens == 77 and settings.reason_max_new_tokens == 99
    assert settings.image_root == tmp_path and settings.allow_image_urls and settings.max_recaption_rounds == 2
    assert settings.call_timeout_s == 7.5 and settings.allowed_specs == ("tiny",)
    assert settings.caption_cache == str(tmp_path / "c.sqlite")
