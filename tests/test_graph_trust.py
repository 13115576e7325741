"""The graph's trust boundary: a run answers its own input (threads, any checkpointer), derived state
cannot be set from outside (commands, state updates), typed errors, reasoning models' output."""

from __future__ import annotations

import asyncio
import http.server
import io
import sqlite3
import threading

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command
from PIL import Image

from rapid_agent import ConfigError, InputError, PromptPreset, RapidContext, build_rapid_graph
from rapid_agent.images import from_data_url
from rapid_agent.testing import ScriptedChatModel, fact_reasoner

COLOURS = {(255, 0, 0): "red", (0, 0, 255): "blue", (0, 128, 0): "green"}


def colour_captioner() -> ScriptedChatModel:
    """Names the colour of the image it is shown (so a stale caption shows up as a wrong colour)."""

    def respond(messages) -> str:
        urls = [p["image_url"]["url"] for p in messages[-1].content if p.get("type") == "image_url"]
        return f"A {COLOURS[from_data_url(urls[0]).getpixel((4, 4))]} square." if urls else "No image."

    return ScriptedChatModel(respond=respond)


def colour_reasoner() -> ScriptedChatModel:
    return fact_reasoner({"red square": "red", "blue square": "blue", "green square": "green"})


def square(colour: str) -> bytes:
    """A PNG (bytes, which a checkpointer can store) of one colour."""
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(params=["memory", "sqlite"])
def checkpointer(request):
    if request.param == "memory":
        yield InMemorySaver()
    else:
        connection = sqlite3.connect(":memory:", check_same_thread=False)
        yield SqliteSaver(connection)
        connection.close()


def thread(name: str) -> dict:
    return {"configurable": {"thread_id": name}}


def test_runs_on_one_thread_answer_their_own_input(checkpointer):
    captioner, reasoner = colour_captioner(), colour_reasoner()
    graph = build_rapid_graph(captioner, reasoner).copy(update={"checkpointer": checkpointer})
    config = thread("t1")

    red = graph.invoke({"images": [square("red")], "question": "Which colour?", "options": ["red", "blue"]}, config)
    assert red["answer"] == "red" and red["options"] == ["red", "blue"]
    blue = graph.invoke({"images": [square("blue")], "question": "Which colour?"}, config)
    assert blue["answer"] == "blue" and blue["captions"] == ["A blue square."]
    assert blue["options"] is None  # not this run's input
    assert [u["node"] for u in blue["usage"]] == ["caption", "reason"]  # this run's calls only
    # explicit captions, then a run without them: the second one captions its own image
    given = graph.invoke({"images": [square("red")], "question": "Which colour?", "captions": ["A green square."]}, config)
    assert given["answer"] == "green" and [u["node"] for u in given["usage"]] == ["reason"]
    again = graph.invoke({"images": [square("red")], "question": "Which colour?"}, config)
    assert again["answer"] == "red" and again["captions"] == ["A red square."]
    assert len(captioner.calls) == 3 and len(reasoner.calls) == 4
    assert graph.get_state(config).values["captions"] == ["A red square."]


def test_derived_fields_of_an_earlier_run_never_carry_over(checkpointer):
    """Tentative answer, re-caption requests, round, reasoning and a failed run's leftovers."""
    captioner = ScriptedChatModel(
        respond=lambda m: "Tentative: 3" if "describe" not in m[0].content.lower() and "needs more" not in str(m[-1].content)
        else "more detail" if "needs more" in str(m[-1].content) else "overview"
    )
    asks_once = ScriptedChatModel(
        respond=lambda m: "\\boxed{7}" if "more detail" in m[-1].content else "<recaption>look closer</recaption>"
    )
    graph = build_rapid_graph(captioner, asks_once, max_recaption_rounds=1, prompt_preset="paper-eval").copy(
        update={"checkpointer": checkpointer}
    )
    config = thread("t2")
    first = graph.invoke({"images": [square("red")], "question": "How many?"}, config)
    assert first["round"] == 1 and first["recaption_requests"] == ["look closer"] and first["answer"] == "7"
    # a run whose reasoner fails leaves captions in the checkpoint; the next run must not reuse them
    broken = build_rapid_graph(colour_captioner(), fact_reasoner({}, fail_times=10, error=ValueError)).copy(
        update={"checkpointer": checkpointer}
    )
    with pytest.raises(Exception, match="scripted failure"):
        broken.invoke({"images": [square("red")], "question": "Which colour?"}, thread("t3"))
    fixed = build_rapid_graph(colour_captioner(), colour_reasoner()).copy(update={"checkpointer": checkpointer})
    out = fixed.invoke({"images": [square("blue")], "question": "Which colour?"}, thread("t3"))
    assert out["answer"] == "blue" and out["round"] == 0 and out["recaption_requests"] == []
    assert out["tentative_answer"] is None and out["truncated"] is False


def test_async_runs_on_a_thread_answer_their_own_input():
    graph = build_rapid_graph(colour_captioner(), colour_reasoner()).copy(update={"checkpointer": InMemorySaver()})

    async def both() -> tuple[dict, dict]:
        red = await graph.ainvoke({"images": [square("red")], "question": "Which colour?"}, thread("a"))
        blue = await graph.ainvoke({"images": [square("blue")], "question": "Which colour?"}, thread("a"))
        return red, blue

    red, blue = asyncio.run(both())
    assert (red["answer"], blue["answer"]) == ("red", "blue")


@pytest.fixture
def canary():
    """A loopback HTTP server that must receive nothing."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/secret.png", hits
    server.shutdown()


def hostile_routes(url: str):
    """(name, how to write hostile state into thread `config` of `graph`, then what to run)."""
    big = "x" * 200_000
    return [
        ("command-image-url", None, Command(update={"image_urls": [url]}, goto="caption")),
        ("command-goto-reason-long-caption", None, Command(update={"captions": [big], "question": "q"}, goto="reason")),
        ("command-goto-prepare", None, Command(update={"question": "q", "captions": ["c"]}, goto="prepare")),
        ("command-round-loop", None,
         Command(update={"question": "q", "captions": ["c"], "recaption_requests": ["a"] * 13, "round": 13}, goto="caption")),
        ("state-update-as-prepare", ({"image_urls": [url], "question": "q"}, "prepare"), None),
        ("state-update-as-caption", ({"captions": [big]}, "caption"), None),
        ("state-update-as-reason", ({"recaption_requests": ["more"] * 5, "round": -5}, "reason"), None),
    ]


@pytest.mark.parametrize("route", range(len(hostile_routes(""))), ids=[r[0] for r in hostile_routes("")])
def test_hostile_state_never_reaches_a_model(route, canary, checkpointer):
    url, hits = canary
    name, state_update, command = hostile_routes(url)[route]
    captioner, reasoner = colour_captioner(), colour_reasoner()
    graph = build_rapid_graph(captioner, reasoner, max_text_chars=8000).copy(update={"checkpointer": checkpointer})
    config = thread(name)
    graph.invoke({"images": [square("red")], "question": "Which colour?"}, config)  # a normal run first
    calls = (len(captioner.calls), len(reasoner.calls))
    with pytest.raises(InputError):
        if state_update is not None:
            values, as_node = state_update
            graph.update_state(config, values, as_node=as_node)
            graph.invoke(None, config)
        else:
            graph.invoke(command, config)
    assert (len(captioner.calls), len(reasoner.calls)) == calls
    assert not any(url in str(m.content) for call in captioner.calls for m in call)
    assert hits == []


def test_internal_fields_are_not_input():
    """Input with derived fields: they are not part of the input schema and are ignored."""
    reasoner = colour_reasoner()
    graph = build_rapid_graph(colour_captioner(), reasoner)
    out = graph.invoke({"images": [square("blue")], "question": "Which colour?", "image_urls": ["http://10.0.0.1/x"],
                        "round": 9, "recaption_requests": ["x"] * 9, "usage": [{"node": "fake"}]})
    assert out["answer"] == "blue" and out["round"] == 0 and [u["node"] for u in out["usage"]] == ["caption", "reason"]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda g: g.invoke({"question": "q", "captions": ["c"]}, context=["reasoner"]), ConfigError,
         "context must be a RapidContext or an object"),
        (lambda g: g.invoke({"question": "q", "captions": ["c"]}, context={"max_recaption_rounds": "2"}), ConfigError,
         "context.max_recaption_rounds: Input should be a valid integer"),
        (lambda g: g.invoke({"question": "q", "captions": ["c"]}, context={"max_recaption_rounds": True}), ConfigError,
         "context.max_recaption_rounds"),
        (lambda g: build_rapid_graph(max_recaption_rounds="2"), ConfigError, "max_recaption_rounds must be an integer"),
        (lambda g: build_rapid_graph(max_recaption_rounds=True), ConfigError, "max_recaption_rounds must be an integer"),
        (lambda g: PromptPreset(name="mine", version=1, reasoner_user="{caption} {answer}"), ConfigError,
         r"preset.reasoner_user: .*unknown placeholder\(s\) \['answer'\]"),
        (lambda g: g.invoke({"question": "Which?", "captions": ["c"], "options": [f"o{i}" for i in range(27)]}),
         InputError, r"input.options has 27 options; the limit is 26 \(A-Z\)"),
        (lambda g: g.invoke({"question": "<image 1> <image 2>", "captions": ["c"]}), InputError,
         "question has no text besides <image N> tags"),
        (lambda g: g.invoke({"question": "q", "captions": ["c" * 20_001]}), InputError,
         r"captions\[0\] has 20001 characters; the limit is 20000"),
    ],
    ids=["context-list", "rounds-string", "rounds-bool", "build-rounds-string", "build-rounds-bool",
         "preset-unknown-placeholder", "27-options", "only-image-tags", "long-caption"],
)
def test_bad_settings_and_input_raise_typed_errors(call, error, message):
    reasoner = fact_reasoner({})
    graph = build_rapid_graph(reasoner=reasoner)
    with pytest.raises(error, match=message):
        call(graph)
    assert reasoner.calls == []


def test_missing_captioner_errors_name_what_is_missing():
    reasoner = fact_reasoner({"circles": "3"})
    graph = build_rapid_graph(reasoner=reasoner, prompt_preset="paper-eval")
    with pytest.raises(ConfigError, match="'paper-eval' preset needs a tentative answer and none is configured; "
                                          "pass tentative_answer in the input"):
        graph.invoke({"question": "How many?", "captions": ["three circles"]})
    with pytest.raises(ConfigError, match="needs a caption and a tentative answer .* pass captions and tentative_answer"):
        graph.invoke({"question": "How many?"})
    with pytest.raises(ConfigError, match="'paper-train' preset needs a caption and none is configured; pass captions"):
        build_rapid_graph(reasoner=reasoner).invoke({"question": "How many?"})
    assert reasoner.calls == []


def test_blind_preset_needs_no_caption_and_no_captioner():
    reasoner = fact_reasoner({"How many circles": "3"})
    graph = build_rapid_graph(reasoner=reasoner, prompt_preset="blind", max_recaption_rounds=2)
    out = graph.invoke({"question": "How many circles?"})
    assert out["answer"] == "3" and out["captions"] == [] and [u["node"] for u in out["usage"]] == ["reason"]
    assert "caption" not in reasoner.calls[0][-1].content.lower() and "<recaption>" not in reasoner.calls[0][-1].content
    # the evals' stand-in caption still works
    assert graph.invoke({"question": "How many circles?", "captions": [""]})["answer"] == "3"


def scripted_replies(*replies: AIMessage) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(replies))


def test_reasoning_content_is_kept_and_the_answer_comes_from_the_reply():
    reply = AIMessage(content="So the answer is \\boxed{2}.",
                      additional_kwargs={"reasoning_content": "Maybe \\boxed{1}? No, count again."},
                      response_metadata={"finish_reason": "stop"})
    out = build_rapid_graph(reasoner=scripted_replies(reply)).invoke({"question": "How many?", "captions": ["c"]})
    assert out["answer"] == "2" and out["truncated"] is False
    assert out["reasoning"] == "<think>\nMaybe \\boxed{1}? No, count again.\n</think>\n\nSo the answer is \\boxed{2}."


@pytest.mark.parametrize(
    "reply",
    [
        AIMessage(content="", additional_kwargs={"reasoning_content": "Counting: \\boxed{4} so"},
                  response_metadata={"finish_reason": "length"}),
        AIMessage(content="<think>Counting the circles, \\boxed{4} maybe, then", response_metadata={}),
        AIMessage(content="<think>a</think> It is probably", response_metadata={"finish_reason": "length"}),
    ],
    ids=["parser-cut-in-thinking", "unclosed-think-tag", "cut-before-the-answer"],
)
def test_a_reasoner_cut_off_is_truncated_and_never_graded_from_its_thinking(reply):
    out = build_rapid_graph(reasoner=scripted_replies(reply)).invoke({"question": "How many?", "captions": ["c"]})
    assert out["truncated"] is True and out["answer"] is None


def test_a_cut_off_reply_that_already_answered_is_graded():
    reply = AIMessage(content="\\boxed{5} and furthermore", response_metadata={"finish_reason": "length"})
    out = build_rapid_graph(reasoner=scripted_replies(reply)).invoke({"question": "How many?", "captions": ["c"]})
    assert out["answer"] == "5" and out["truncated"] is False


def test_context_object_still_works_after_validation():
    out = build_rapid_graph(reasoner=fact_reasoner({"c": "1"})).invoke(
        {"question": "q", "captions": ["c"]}, context=RapidContext(max_recaption_rounds=0)
    )
    assert out["answer"] == "1"


def test_a_legitimate_resume_after_an_interrupt_still_works(checkpointer):
    """Caption, stop before `reason`, then resume the same run: the checks do not get in the way."""
    captioner, reasoner = colour_captioner(), colour_reasoner()
    graph = build_rapid_graph(captioner, reasoner).copy(update={"checkpointer": checkpointer})
    config = thread("resume")
    paused = graph.invoke({"images": [square("blue")], "question": "Which colour?"}, config, interrupt_before=["reason"])
    assert paused["captions"] == ["A blue square."] and reasoner.calls == []
    assert graph.invoke(None, config)["answer"] == "blue"
    assert len(captioner.calls) == 1 and len(reasoner.calls) == 1
