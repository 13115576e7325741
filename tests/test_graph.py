"""The RAPID graph with scripted chat models: every node, route, and the per-call context."""

from __future__ import annotations

import asyncio
import threading

import pytest
from langgraph.types import RetryPolicy

from rapid_agent import (
    BackendError,
    ConfigError,
    ImageInputError,
    InputError,
    RapidContext,
    build_rapid_graph,
)
from rapid_agent.testing import ScriptedChatModel, echo_captioner, fact_reasoner

FAST_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False, retry_on=lambda e: getattr(e, "transient", False))


def human_text(call) -> str:
    """The text parts of the last (human) message of a recorded call."""
    content = call[-1].content
    return content if isinstance(content, str) else " ".join(p["text"] for p in content if p.get("type") == "text")


def image_parts(call) -> list[dict]:
    content = call[-1].content
    return [] if isinstance(content, str) else [p for p in content if p.get("type") == "image_url"]


@pytest.fixture
def captioner():
    return echo_captioner("The picture shows three red circles.")


@pytest.fixture
def reasoner():
    return fact_reasoner({"three red circles": "3"})


def test_caption_then_reason_answers_from_the_caption(captioner, reasoner, circles_image):
    graph = build_rapid_graph(captioner, reasoner)
    result = graph.invoke({"images": [circles_image], "question": "How many circles are there?"})

    assert result["captions"] == ["The picture shows three red circles."]
    assert result["answer"] == "3"
    assert "\\boxed{3}" in result["reasoning"]
    assert [u["node"] for u in result["usage"]] == ["caption", "reason"]
    assert all(u["output_tokens"] > 0 and u["latency_s"] >= 0 for u in result["usage"])
    # the captioner saw the image and the paper's captioning prompt; the reasoner saw the caption
    (caption_call,) = captioner.calls
    assert len(image_parts(caption_call)) == 1
    assert image_parts(caption_call)[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert "DO NOT try to answer the question!" in human_text(caption_call)
    assert "Do not try to answer the question." in caption_call[0].content
    (reason_call,) = reasoner.calls
    assert "### The detailed caption of the provided image: The picture shows three red circles." in human_text(reason_call)
    assert "<recaption>" not in human_text(reason_call)  # the loop is off by default


def test_options_are_lettered_and_image_tags_stripped_for_the_reasoner(captioner, reasoner, circles_image):
    graph = build_rapid_graph(captioner, reasoner)
    result = graph.invoke(
        {"images": [circles_image], "question": "<image 1> How many circles?", "options": ["2", "3", "4"]}
    )
    prompt = human_text(reasoner.calls[0])
    assert "How many circles?\nOptions:\nA. 2\nB. 3\nC. 4" in prompt
    assert "<image" not in prompt
    assert result["answer"] == "3"


def test_given_captions_skip_the_caption_node(reasoner):
    graph = build_rapid_graph(captioner=None, reasoner=reasoner)
    updates = list(graph.stream({"question": "How many?", "captions": ["three red circles"]}, stream_mode="updates"))
    assert [next(iter(u)) for u in updates] == ["prepare", "reason"]
    assert updates[-1]["reason"]["answer"] == "3"


def test_no_extractable_answer_is_recorded_as_none(captioner, circles_image):
    graph = build_rapid_graph(captioner, fact_reasoner({"a fact never captioned": "1"}))
    result = graph.invoke({"images": [circles_image], "question": "How many?"})
    assert result["answer"] is None
    assert result["reasoning"] == "I cannot tell."


def test_async_and_batched_runs_give_each_input_its_own_answer(captioner, circles_image):
    reasoner = ScriptedChatModel(respond=lambda m: f"\\boxed{{{len(human_text(m))}}}")
    graph = build_rapid_graph(captioner, reasoner)
    inputs = [{"images": [circles_image], "question": "q" * n} for n in (1, 5, 9)]

    batched = graph.batch(inputs, config={"max_concurrency": 2})
    abatched = asyncio.run(graph.abatch(inputs))
    single = asyncio.run(graph.ainvoke(inputs[1]))

    answers = [r["answer"] for r in batched]
    assert len(set(answers)) == 3  # different questions -> different prompt lengths -> different answers
    assert [r["answer"] for r in abatched] == answers
    assert single["answer"] == answers[1]


def test_paper_eval_preset_runs_tentative_concurrently_and_feeds_it_to_the_reasoner(circles_image):
    both_running = threading.Barrier(2, timeout=60)  # passes only when caption and tentative run at once

    def respond(messages) -> str:
        both_running.wait()
        return "Tentative: 3" if "describe" not in messages[0].content else "three red circles"

    captioner = ScriptedChatModel(respond=respond)
    reasoner = fact_reasoner({"Tentative: 3": "3"})
    graph = build_rapid_graph(captioner, reasoner, prompt_preset="paper-eval")
    result = graph.invoke({"images": [circles_image], "question": "How many?"})

    assert result["tentative_answer"] == "Tentative: 3"
    assert result["answer"] == "3"
    assert len(captioner.calls) == 2
    prompt = human_text(reasoner.calls[0])
    assert "### A tentative model response: Tentative: 3" in prompt
    assert "### A problem to be solved: How many?" in prompt


def test_recaption_loop_asks_the_captioner_again_with_the_request(circles_image):
    captioner = ScriptedChatModel(respond=lambda m: "detail" if "needs more detail" in human_text(m) else "overview")
    reasoner = ScriptedChatModel(
        respond=lambda m: "\\boxed{7}" if "detail" in human_text(m).split("overview", 1)[-1]
        else "<recaption>count the small dots</recaption>"
    )
    graph = build_rapid_graph(captioner, reasoner, max_recaption_rounds=2)
    result = graph.invoke({"images": [circles_image], "question": "How many dots?"})

    assert result["captions"] == ["overview", "detail"]
    assert result["recaption_requests"] == ["count the small dots"]
    assert result["round"] == 1
    assert result["answer"] == "7"
    assert "count the small dots" in human_text(captioner.calls[1])
    assert "<recaption>" in human_text(reasoner.calls[0])  # the reasoner is told how to ask
    assert "Additional description (count the small dots): detail" in human_text(reasoner.calls[1])


def test_recaption_loop_stops_at_max_rounds(captioner, circles_image):
    reasoner = ScriptedChatModel(respond=lambda m: "<recaption>more please</recaption>")
    graph = build_rapid_graph(captioner, reasoner, max_recaption_rounds=2)
    result = graph.invoke({"images": [circles_image], "question": "How many?"})
    assert len(captioner.calls) == 3 and len(reasoner.calls) == 3
    assert result["round"] == 2
    assert result["answer"] is None
    assert "<recaption>" not in human_text(reasoner.calls[-1])  # no longer offered


def test_context_swaps_reasoner_preset_and_rounds_per_call(captioner, reasoner, circles_image):
    graph = build_rapid_graph(captioner, reasoner)
    other = ScriptedChatModel(respond=lambda m: "\\boxed{other}")
    result = graph.invoke(
        {"images": [circles_image], "question": "How many?"},
        context=RapidContext(reasoner=other, prompt_preset="paper-eval"),
    )
    assert result["answer"] == "other"
    assert reasoner.calls == []
    assert result["tentative_answer"] is not None
    assert "### A tentative model response" in human_text(other.calls[0])
    # a plain dict context (as the LangGraph server sends it) works too
    result = graph.invoke({"images": [circles_image], "question": "How many?"}, context={"reasoner": other})
    assert result["answer"] == "other"


def test_transient_backend_errors_are_retried(captioner, circles_image):
    flaky = fact_reasoner({"three red circles": "3"}, fail_times=2)
    graph = build_rapid_graph(captioner, flaky, retry_policy=FAST_RETRY)
    result = graph.invoke({"images": [circles_image], "question": "How many?"})
    assert result["answer"] == "3"
    assert len(flaky.calls) == 3


def test_a_backend_that_keeps_failing_raises_a_backend_error_naming_it(captioner, circles_image):
    broken = fact_reasoner({}, fail_times=100)
    graph = build_rapid_graph(captioner, broken, retry_policy=FAST_RETRY)
    with pytest.raises(BackendError, match=r"reason: model .* failed: ConnectionError"):
        graph.invoke({"images": [circles_image], "question": "How many?"})
    assert len(broken.calls) == 3


def test_a_backend_that_hangs_times_out_sync_and_async():
    """The one time-out test: scripted reasoners that never answer on their own (nothing else is timed).

    Sync: the call blocks its thread until released. Async: the call awaits a sleep that only the
    time-out cancels (a blocking wait inside an async call would hold the event loop, and the time-out
    with it, until released)."""
    release = threading.Event()
    hanging = ScriptedChatModel(respond=lambda m: "\\boxed{3}" if release.wait(600) else "never released")
    stalled = ScriptedChatModel(respond=lambda m: "\\boxed{3}", latency_s=3600.0)
    inputs = {"question": "How many?", "captions": ["three red circles"]}
    try:
        with pytest.raises(BackendError, match=r"reason: model .* timed out after 0.2s"):
            build_rapid_graph(reasoner=hanging, call_timeout_s=0.2, retry_policy=None).invoke(inputs)
        with pytest.raises(BackendError, match=r"reason: model .* timed out after 0.2s"):
            asyncio.run(build_rapid_graph(reasoner=stalled, call_timeout_s=0.2, retry_policy=None).ainvoke(inputs))
    finally:
        release.set()


def test_non_transient_errors_are_not_retried(captioner, circles_image):
    bad = fact_reasoner({}, fail_times=100, error=KeyError)
    graph = build_rapid_graph(captioner, bad, retry_policy=FAST_RETRY)
    with pytest.raises(BackendError, match="KeyError"):
        graph.invoke({"images": [circles_image], "question": "How many?"})
    assert len(bad.calls) == 1


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        ({"question": "   "}, InputError, "input.question is required and must be a non-empty string"),
        ({"question": "x" * 20_001}, InputError, r"input.question has 20001 characters; the limit is 20000 \(max_text_chars\)"),
        ({"question": "Which?", "options": "A, B"}, InputError, "options must be a list of non-empty strings"),
        ({"question": "Which?", "options": ["a", 3]}, InputError, "options must be a list"),
        ({"question": "Which?", "images": ["/no/such/file.png"]}, ImageInputError, "no such image file"),
        ({"question": "Which?", "images": [b"not an image"]}, ImageInputError, "not a readable image"),
    ],
    ids=["empty-question", "long-question", "options-string", "options-non-str", "missing-file", "corrupt-bytes"],
)
def test_bad_requests_fail_before_any_model_call(captioner, reasoner, request_, error, message):
    graph = build_rapid_graph(captioner, reasoner)
    with pytest.raises(error, match=message):
        graph.invoke(request_)
    assert captioner.calls == [] and reasoner.calls == []


def test_missing_models_and_bad_settings_are_config_errors(captioner, circles_image):
    with pytest.raises(ConfigError, match="no reasoner"):
        build_rapid_graph(captioner).invoke({"images": [circles_image], "question": "q"})
    with pytest.raises(ConfigError, match="no captioner"):
        build_rapid_graph(reasoner=captioner).invoke({"images": [circles_image], "question": "q"})
    with pytest.raises(ConfigError, match="unknown prompt preset 'nope'"):
        build_rapid_graph(captioner, captioner, prompt_preset="nope")
    with pytest.raises(ConfigError, match="malformed model spec 'gpt4'"):
        build_rapid_graph(captioner, "gpt4").invoke({"images": [circles_image], "question": "q"})
    with pytest.raises(ConfigError, match="context.llm: Extra inputs are not permitted"):
        build_rapid_graph(captioner, captioner).invoke({"question": "q", "captions": ["c"]}, context={"llm": "x"})
    with pytest.raises(ConfigError, match="max_recaption_rounds"):
        build_rapid_graph(captioner, captioner, max_recaption_rounds=-1)


def test_updates_stream_each_node_and_messages_stream_tokens(captioner, reasoner, circles_image):
    graph = build_rapid_graph(captioner, reasoner)
    inputs = {"images": [circles_image], "question": "How many?"}
    nodes = [next(iter(u)) for u in graph.stream(inputs, stream_mode="updates")]
    assert nodes == ["prepare", "caption", "reason"]

    reason_tokens = [
        chunk.content for chunk, meta in graph.stream(inputs, stream_mode="messages") if meta["langgraph_node"] == "reason"
    ]
    assert len(reason_tokens) > 3
    assert "".join(reason_tokens).endswith("\\boxed{3}.")


def test_perception_only_pass_stops_before_reason_without_a_reasoner(captioner, circles_image):
    """Caption once, reason many: the eval harness captions with `interrupt_before=["reason"]`."""
    graph = build_rapid_graph(captioner, prompt_preset="paper-eval")
    result = graph.invoke({"images": [circles_image], "question": "How many?"}, interrupt_before=["reason"])
    assert result["captions"] == ["The picture shows three red circles."]
    assert result["tentative_answer"] == "The picture shows three red circles."
    assert result["reasoning"] is None and result["answer"] is None
    with pytest.raises(ConfigError, match="no reasoner"):
        graph.invoke({"images": [circles_image], "question": "How many?"})


def test_input_and_output_json_schemas_describe_the_graph_for_remote_callers():
    graph = build_rapid_graph(echo_captioner(), fact_reasoner({}))
    schema = graph.get_input_jsonschema()
    assert schema["required"] == ["question"]
    assert schema["properties"]["images"]["items"]["type"] == "string"
    assert "data:image" in schema["properties"]["images"]["items"]["description"]
    assert {"answer", "captions", "reasoning", "truncated"} <= set(graph.get_output_jsonschema()["properties"])
