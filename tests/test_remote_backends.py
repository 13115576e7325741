"""The graph against real local OpenAI-compatible servers (`transformers serve`, same protocol as vLLM)."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import threading
import time

import openai
import pytest

from rapid_agent import BackendError, GenerationSettings, ModelResolver, RapidContext, build_rapid_graph
from rapid_agent.models.served import ServedChatModel, precheck
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


def test_unreachable_endpoint_is_a_backend_error_naming_role_and_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    graph = build_rapid_graph(reasoner=f"openai:some-model@{url}", resolver=resolver(), retry_policy=None)
    with pytest.raises(BackendError, match=f"reasoner: the server at {url} is unreachable") as caught:
        graph.invoke({"question": "q", "captions": ["c"]})
    assert caught.value.transient  # the graph's retry policy retries it (the check runs again)


# ---------------------------------------------------------------- pre-check, budgets, hung servers


def served(spec: str, **generation) -> ServedChatModel:
    model = ModelResolver({"reasoner": GenerationSettings(**generation)}).resolve(spec, "reasoner")
    assert isinstance(model, ServedChatModel)
    return model


@pytest.fixture
def scripted_server():
    from rapid_agent.testing import fact_reasoner
    from rapid_agent.testing.openai_server import ScriptedOpenAIServer

    with ScriptedOpenAIServer(fact_reasoner({}, fallback="\\boxed{1}"), model_name="served-r") as server:
        yield server


@pytest.fixture
def models_listing():
    """A server answering `GET /v1/models` with a vLLM-style listing; `.listing` sets what it lists."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"object": "list", "data": server.listing}).encode()
            self.send_response(200 if self.path == "/v1/models" else 404)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.listing = []
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join()


def test_a_wrong_model_name_is_reported_with_the_served_names_before_any_call(scripted_server):
    model = served(f"openai:not-served@{scripted_server.base_url}")
    with pytest.raises(BackendError) as caught:
        precheck([("reasoner", model)])
    assert f"reasoner: the server at {scripted_server.base_url} serves ['served-r']; you asked for 'not-served'" \
        in str(caught.value)
    with pytest.raises(BackendError, match="you asked for 'not-served'"):
        model.invoke("hi")  # the library path checks before its first call too
    assert scripted_server.requests == 0


def test_a_url_without_v1_gets_a_hint(scripted_server):
    root = scripted_server.base_url.removesuffix("/v1")
    with pytest.raises(BackendError, match=rf"answered 404 .* did you mean {root}/v1\?"):
        precheck([("reasoner", served(f"openai:served-r@{root}"))])


def test_the_budget_is_fitted_to_the_served_context_with_a_notice(models_listing, caplog):
    models_listing.listing = [{"id": "m", "object": "model", "max_model_len": 300}]
    big, small = served(f"openai:m@{models_listing.base_url}"), served(f"openai:m@{models_listing.base_url}",
                                                                       max_new_tokens=200)
    with caplog.at_level(logging.WARNING, logger="rapid_agent.models.served"):
        precheck([("reasoner", big), ("reasoner", small)], {"reasoner": "--reason-max-new-tokens"})
    assert (big.max_tokens, small.max_tokens) == (300, 200)  # the role default (8192) fitted; 200 fits as it is
    [notice] = [r.getMessage() for r in caplog.records]
    assert "300-token context" in notice and "8192" in notice and "--reason-max-new-tokens" in notice

    models_listing.listing = [{"id": "m", "object": "model"}]  # no context reported: the budget stays
    unknown = served(f"openai:m@{models_listing.base_url}", max_new_tokens=8192)
    precheck([("reasoner", unknown)])
    assert unknown.max_tokens == 8192


def test_an_unpinned_transformers_serve_answers_for_any_name(models_listing):
    status = {"value": "unloaded"}
    models_listing.listing = [{"id": "a/b", "object": "model", "status": status},
                              {"id": "c/d", "object": "model", "status": status}]
    precheck([("reasoner", served(f"openai:/some/local/path@{models_listing.base_url}"))])  # loads on demand
    models_listing.listing = models_listing.listing[:1]  # pinned to one model: only that name is served
    with pytest.raises(BackendError, match=r"serves \['a/b'\]"):
        precheck([("reasoner", served(f"openai:/some/local/path@{models_listing.base_url}"))])


def test_a_hung_server_fails_every_later_call_at_once_with_a_resume_hint():
    from rapid_agent.testing import fact_reasoner
    from rapid_agent.testing.openai_server import ScriptedOpenAIServer

    with ScriptedOpenAIServer(fact_reasoner({}), model_name="r", failure_rate=1.0, failure_kinds=("hang",),
                              hang_s=30) as server:
        model = served(server.spec, timeout_s=0.3)
        outcomes = []
        for _ in range(4):  # a timeout is retried by the graph until no call completed for 2 timeouts
            try:
                model.invoke("hi")
            except BackendError as exc:
                outcomes.append(exc)
                break
            except openai.APITimeoutError:
                outcomes.append("timeout")
        assert isinstance(outcomes[-1], BackendError) and not outcomes[-1].transient
        assert "looks hung" in str(outcomes[-1]) and "resume" in str(outcomes[-1])
        assert "queued" in str(outcomes[-1])  # the timeout's meaning is spelled out
        sent = server.requests
        with pytest.raises(BackendError, match="looks hung"):
            model.invoke("hi")
        assert server.requests == sent  # not sent to the hung server at all


def test_idle_time_before_a_slow_call_is_not_taken_for_a_hang():
    from rapid_agent.testing import fact_reasoner
    from rapid_agent.testing.openai_server import ScriptedOpenAIServer

    with ScriptedOpenAIServer(fact_reasoner({}), model_name="r", failure_rate=1.0, failure_kinds=("hang",),
                              hang_s=30) as server:
        model = served(server.spec, timeout_s=1.0)
        precheck([("reasoner", model)])
        time.sleep(2.5)  # idle (as during an eval's captioning pass) for longer than 2 timeouts
        with pytest.raises(openai.APITimeoutError):  # one timeout: retried, not yet a hang
            model.invoke("hi")


def test_evals_check_every_reasoner_before_captioning(scripted_server, tmp_path):
    from evals.config import EvalConfig
    from evals.runner import RunOptions, run_eval
    from rapid_agent.testing import echo_captioner

    captioner = echo_captioner()
    config = EvalConfig(captioner="cap", reasoners=(f"openai:typo@{scripted_server.base_url}",), limit=2)
    options = RunOptions(output_dir=tmp_path / "out", cache_path=None, show=0, progress=False)
    with pytest.raises(BackendError, match="serves \\['served-r'\\]; you asked for 'typo'"):
        run_eval(config, options, models={"cap": captioner})
    assert captioner.calls == [] and scripted_server.requests == 0


@pytest.fixture
def thinking_server():
    """A server replying as `vllm serve --reasoning-parser deepseek_r1` does: thinking apart, in `reasoning_content`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, body: bytes, kind: str = "application/json") -> None:
            self.send_response(200)
            self.send_header("content-type", kind)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._send(json.dumps({"object": "list", "data": [{"id": "r1", "object": "model", "max_model_len": 4096}]}).encode())

        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["content-length"])))
            head = {"id": "c", "created": 0, "model": "r1"}
            usage = {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}
            if not request.get("stream"):
                message = {"role": "assistant", "content": "\\boxed{3}", "reasoning_content": "Three circles."}
                self._send(json.dumps({**head, "object": "chat.completion", "usage": usage, "choices": [
                    {"index": 0, "message": message, "finish_reason": "stop"}]}).encode())
                return
            deltas = [{"role": "assistant", "reasoning_content": "Three "}, {"reasoning_content": "circles."},
                      {"content": "\\boxed{3}"}]
            events = [{**head, "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
            events.append({**head, "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": {}, "finish_reason": "stop"}]})
            events.append({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
            self._send("".join(f"data: {json.dumps(e)}\n\n" for e in events).encode() + b"data: [DONE]\n\n",
                       "text/event-stream")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"openai:r1@http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    thread.join()


def test_a_reasoning_parsers_thinking_is_kept_apart_from_the_reply(thinking_server):
    model = served(thinking_server)
    reply = model.invoke("How many circles?")
    streamed = list(model.stream("How many circles?"))
    whole = streamed[0]
    for chunk in streamed[1:]:
        whole += chunk
    for message in (reply, whole):
        assert message.text == "\\boxed{3}"
        assert message.additional_kwargs["reasoning_content"] == "Three circles."

    result = build_rapid_graph(reasoner=thinking_server, resolver=ModelResolver()).invoke(
        {"question": "How many circles?", "captions": ["three red circles"]})
    assert result["answer"] == "3" and "Three circles." in result["reasoning"]  # graded from the reply only


def test_an_eval_against_a_hung_reasoner_ends_soon_with_every_sample_saying_why(tmp_path):
    from evals.config import EvalConfig
    from evals.runner import RunOptions, run_eval
    from rapid_agent.testing import echo_captioner, fact_reasoner
    from rapid_agent.testing.openai_server import ScriptedOpenAIServer

    with ScriptedOpenAIServer(fact_reasoner({}), model_name="r", failure_rate=1.0, failure_kinds=("hang",),
                              hang_s=30) as server:
        config = EvalConfig(captioner="cap", reasoners=(server.spec,), limit=4, prompt_preset="paper-train",
                            reasoner_generation=GenerationSettings(timeout_s=0.5))
        options = RunOptions(output_dir=tmp_path / "out", cache_path=None, show=0, progress=False, retries=5,
                             retry_initial_s=0.01)
        result = run_eval(config, options, models={"cap": echo_captioner()})
        assert result.errors == 4
        assert server.requests <= 3 * 4  # hung after 2 timeouts' worth: most of the 6 attempts per sample never sent
    errors = [json.loads(line)["error"] for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert len(errors) == 4 and all("looks hung" in e and "resume" in e for e in errors)
