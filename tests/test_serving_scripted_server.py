"""ScriptedOpenAIServer: a real OpenAI-compatible endpoint for scripted models, with injected failures."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

from rapid_agent.serving.client import encode_image
from rapid_agent.testing import fact_reasoner
from rapid_agent.testing.openai_server import ScriptedOpenAIServer


def chat(server: ScriptedOpenAIServer, **kwargs) -> ChatOpenAI:
    return ChatOpenAI(base_url=server.base_url, api_key="x", model=server.model_name, max_retries=0, **kwargs)


def test_answers_plain_and_streamed_with_usage():
    model = fact_reasoner({"red circles": "3"})
    with ScriptedOpenAIServer(model, model_name="r") as server:
        reply = chat(server).invoke("How many red circles?")
        chunks = list(chat(server, stream_usage=True).stream("How many red circles?"))
        models = httpx.get(f"{server.base_url}/models").json()
    assert reply.content.endswith("\\boxed{3}.")
    assert reply.usage_metadata["output_tokens"] == len(reply.content.split())
    assert "".join(c.content for c in chunks) == reply.content
    assert sum((c.usage_metadata or {}).get("output_tokens", 0) for c in chunks) == reply.usage_metadata["output_tokens"]
    assert [m["id"] for m in models["data"]] == ["r"]
    assert len(model.calls) == 2 and server.requests == 2


def test_image_parts_reach_the_model_and_bad_requests_are_refused():
    model = fact_reasoner({})
    image = "data:image/png;base64," + base64.b64encode(b"png").decode()
    with ScriptedOpenAIServer(model, model_name="c") as server:
        chat(server).invoke([("user", [{"type": "image_url", "image_url": {"url": image}}, {"type": "text", "text": "hi"}])])
        with pytest.raises(openai.NotFoundError, match="model 'other' is not served here"):
            ChatOpenAI(base_url=server.base_url, api_key="x", model="other", max_retries=0).invoke("hi")
        malformed = httpx.post(f"{server.base_url}/chat/completions", json={"model": "c"})
    assert model.calls[0][0].content[0]["image_url"]["url"] == image
    assert malformed.status_code == 400 and "malformed chat request" in malformed.json()["error"]["message"]


@pytest.mark.slow  # the injected hangs are waited out by the client's time-out (all at once: ~10 s)
def test_injected_failures_follow_the_rate_and_cycle_through_kinds():
    # a hang outlasts the client's time-out by far, and the time-out is a generous bound on a normal answer
    def outcome(server: ScriptedOpenAIServer) -> str:
        try:
            chat(server, timeout=10).invoke("hi")
            return "ok"
        except openai.InternalServerError:
            return "error"
        except openai.APITimeoutError:
            return "hang"

    with ScriptedOpenAIServer(fact_reasoner({}), failure_rate=0.3, failure_kinds=("error", "hang"), hang_s=120, seed=1) as server:
        with ThreadPoolExecutor(max_workers=24) as pool:  # concurrent clients: the hangs overlap
            outcomes = list(pool.map(lambda _: outcome(server), range(24)))
    assert server.requests == 24
    assert outcomes.count("error") == server.failures["error"] and outcomes.count("hang") == server.failures["hang"]
    assert abs(server.failures["error"] - server.failures["hang"]) <= 1  # kinds alternate
    assert 2 <= server.failures.total() <= 14  # about 30% of 24
    with pytest.raises(ValueError, match="failure_rate"):
        ScriptedOpenAIServer(fact_reasoner({}), failure_rate=1.5)


def test_client_sends_local_files_as_base64(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"\x89PNG fake")
    assert encode_image(str(path)) == "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
    assert encode_image(path).startswith("data:image/png;base64,")
    for unchanged in ["https://x.org/a.png", "data:image/png;base64,AAAA", "not/here.png"]:
        assert encode_image(unchanged) == unchanged
