"""Tests of rapid_agent.testing: tiny offline models and scripted chat models."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.tools import tool
from PIL import Image
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

from rapid_agent.testing import (
    ScriptedChatModel,
    ToolCallingScriptedModel,
    build_tiny_captioner,
    build_tiny_reasoner,
    echo_captioner,
    ensure_tiny_models,
    fact_reasoner,
    tiny_models_dir,
)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return ensure_tiny_models(tmp_path_factory.mktemp("tiny-models"))


def _conversation(image: Image.Image, question: str) -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]}
    ]


def test_tiny_captioner_generates_a_left_padded_batch(tiny_models: tuple[Path, Path]) -> None:
    captioner, _ = tiny_models
    model = AutoModelForImageTextToText.from_pretrained(captioner)
    processor = AutoProcessor.from_pretrained(captioner)
    conversations = [
        _conversation(Image.new("RGB", (64, 64), "red"), "Count the triangles."),
        _conversation(Image.new("RGB", (300, 200), "blue"), "Describe the bar chart in detail, please."),
    ]
    inputs = processor.apply_chat_template(
        conversations,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        add_generation_prompt=True,
        processor_kwargs={"padding": True},
    )
    assert inputs["image_grid_thw"].shape[0] == 2
    assert inputs["attention_mask"][0, 0] == 0 and inputs["attention_mask"][:, -1].all()  # left padding
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    replies = processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert len(replies) == 2 and all(isinstance(reply, str) for reply in replies)


def test_tiny_captioner_chat_template_handles_text_and_images(tiny_models: tuple[Path, Path]) -> None:
    processor = AutoProcessor.from_pretrained(tiny_models[0])
    prompt = processor.apply_chat_template(
        [
            {"role": "system", "content": "Be brief."},
            *_conversation(Image.new("RGB", (8, 8)), "What is shown?"),
        ],
        add_generation_prompt=True,
    )
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is shown?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_tiny_reasoner_reloads_and_generates(tiny_models: tuple[Path, Path]) -> None:
    _, reasoner = tiny_models
    model = AutoModelForCausalLM.from_pretrained(reasoner)
    tokenizer = AutoTokenizer.from_pretrained(reasoner)
    assert model.config.hidden_size // model.config.num_attention_heads == 32
    conversations = [
        [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is 3 + 5?"}],
        [{"role": "user", "content": "Count the circles in a bar chart with 12 bars."}],
    ]
    inputs = tokenizer.apply_chat_template(
        conversations,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        padding=True,
        add_generation_prompt=True,
    )
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert output.shape[0] == 2 and output.shape[1] > inputs["input_ids"].shape[1]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.padding_side == "left"


def test_rebuild_is_skipped(tiny_models: tuple[Path, Path]) -> None:
    captioner, _ = tiny_models
    weights = captioner / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert build_tiny_captioner(captioner, seed=1) == captioner
    assert weights.stat().st_mtime_ns == before


def test_concurrent_builds_of_one_path_agree(tmp_path: Path) -> None:
    target = tmp_path / "reasoner"
    with ThreadPoolExecutor(max_workers=3) as pool:
        paths = list(pool.map(lambda seed: build_tiny_reasoner(target, seed=seed), range(3)))
    assert paths == [target] * 3
    assert (target / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["reasoner"]  # no temporary build left behind


def test_build_refuses_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(FileExistsError):
        build_tiny_captioner(tmp_path)


def test_tiny_models_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAPID_TINY_MODELS_DIR", str(tmp_path))
    assert tiny_models_dir() == tmp_path
    monkeypatch.delenv("RAPID_TINY_MODELS_DIR")
    assert tiny_models_dir() == Path.home() / ".cache" / "rapid-agent" / "tiny-models"


def test_scripted_model_replies_with_usage_and_records_calls() -> None:
    model = ScriptedChatModel(respond=lambda messages: f"seen {len(messages)} messages")
    reply = model.invoke([SystemMessage("be nice"), HumanMessage("hello there")])
    assert reply.content == "seen 2 messages"
    assert reply.usage_metadata == {"input_tokens": 4, "output_tokens": 3, "total_tokens": 7}
    assert [m.text for m in model.calls[0]] == ["be nice", "hello there"]


def test_scripted_model_fails_first_calls_then_retries_succeed() -> None:
    model = ScriptedChatModel(respond=lambda _: "ok", fail_times=2, error=TimeoutError)
    with pytest.raises(TimeoutError, match="scripted failure"):
        model.invoke("hi")
    retrying = model.with_retry(
        retry_if_exception_type=(TimeoutError,), stop_after_attempt=3, wait_exponential_jitter=False
    )
    assert retrying.invoke("hi").content == "ok"
    assert len(model.calls) == 3


def test_scripted_model_is_thread_safe() -> None:
    model = ScriptedChatModel(respond=lambda _: "ok", latency_s=0.01, fail_times=5)

    def call(_: int) -> bool:
        try:
            model.invoke("hi")
        except ConnectionError:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(call, range(40)))
    assert outcomes.count(False) == 5 and len(model.calls) == 40


def test_scripted_model_streams_word_by_word() -> None:
    model = ScriptedChatModel(respond=lambda _: "three red circles here")
    chunks = list(model.stream("hi"))
    assert [c.content for c in chunks] == ["three ", "red ", "circles ", "here"]
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    merged = chunks[0] + chunks[1] + chunks[2] + chunks[3]
    assert merged.content == "three red circles here" and merged.usage_metadata["output_tokens"] == 4


def test_scripted_model_async_stream() -> None:
    model = ScriptedChatModel(respond=lambda _: "a b c")

    async def collect() -> list[str]:
        return [chunk.content async for chunk in model.astream("hi")]

    assert asyncio.run(collect()) == ["a ", "b ", "c"]


def test_scripted_model_async_calls_overlap() -> None:
    n = 10
    model = ScriptedChatModel(respond=lambda _: "ok", latency_s=0.01, wait_for_in_flight=n)

    async def run_all() -> list:
        return await asyncio.gather(*(model.ainvoke(f"question {i}") for i in range(n)))

    assert [reply.content for reply in asyncio.run(run_all())] == ["ok"] * n
    assert len(model.calls) == n and model.max_in_flight == n


def test_scripted_model_gate_fails_when_calls_never_overlap() -> None:
    model = ScriptedChatModel(respond=lambda _: "ok", wait_for_in_flight=2, gate_timeout_s=0.05)
    with pytest.raises(TimeoutError, match="only 1 of the 2 awaited calls"):
        model.invoke("alone")
    with ThreadPoolExecutor(max_workers=2) as pool:  # sync calls on two threads open the gate together
        gated = ScriptedChatModel(respond=lambda _: "ok", wait_for_in_flight=2)
        assert [r.content for r in pool.map(gated.invoke, ["a", "b"])] == ["ok", "ok"]
    assert gated.max_in_flight == 2


def test_fact_reasoner_boxes_only_known_facts() -> None:
    reasoner = fact_reasoner({"three red circles": "3"})
    assert "\\boxed{3}" in reasoner.invoke("Caption: I see Three Red Circles. How many?").content
    assert reasoner.invoke("Caption: a blue square. How many circles?").content == "I cannot tell."
    assert fact_reasoner({}, fallback="no idea").invoke("x").content == "no idea"


def test_echo_captioner_inserts_the_question() -> None:
    captioner = echo_captioner("A chart. Asked: {question}", name="captioner")
    image_part = {"type": "image", "url": "https://example.invalid/x.png"}
    message = HumanMessage(content=[image_part, {"type": "text", "text": "How many bars?"}])
    assert captioner.invoke([message]).content == "A chart. Asked: How many bars?"
    assert captioner.name == "captioner"


def test_tool_calling_model_plays_its_script() -> None:
    @tool
    def look_and_reason(question: str) -> str:
        """Answer a question about the image."""
        return "3"

    call = {"name": "look_and_reason", "args": {"question": "How many?"}, "id": "call_1"}
    model = ToolCallingScriptedModel(script=[AIMessage(content="", tool_calls=[call]), "The answer is 3."])
    assert model.bind_tools([look_and_reason]) is model
    assert model.bound_tool_names == ["look_and_reason"]
    first = model.invoke("How many circles?")
    assert first.tool_calls[0]["name"] == "look_and_reason" and first.tool_calls[0]["id"] == "call_1"
    assert model.invoke("go on").content == "The answer is 3."
    with pytest.raises(IndexError):
        model.invoke("more")
    assert len(model.calls) == 3


def test_tool_calling_model_drives_create_agent() -> None:
    agents = pytest.importorskip("langchain.agents")

    @tool
    def look_and_reason(question: str) -> str:
        """Answer a question about the image."""
        return f"answer to {question!r}: 3"

    call = {"name": "look_and_reason", "args": {"question": "How many circles?"}, "id": "call_1"}
    model = ToolCallingScriptedModel(
        script=[AIMessage(content="", tool_calls=[call]), "There are 3 circles."]
    )
    agent = agents.create_agent(model=model, tools=[look_and_reason])
    result = agent.invoke({"messages": [HumanMessage("How many circles?")]})
    assert result["messages"][-1].content == "There are 3 circles."
    assert result["messages"][2].content == "answer to 'How many circles?': 3"


def test_scripted_model_tokens_reach_langgraph_message_streams() -> None:
    from langgraph.graph import START, MessagesState, StateGraph

    model = ScriptedChatModel(respond=lambda _: "one two three")
    builder = StateGraph(MessagesState)
    builder.add_node("answer", lambda state: {"messages": [model.invoke(state["messages"])]})
    builder.add_edge(START, "answer")
    graph = builder.compile()
    tokens = [
        chunk.content for chunk, _ in graph.stream({"messages": [HumanMessage("hi")]}, stream_mode="messages")
    ]
    assert tokens == ["one ", "two ", "three"]


@pytest.mark.parametrize(
    ("markexpr", "keyword", "source", "collect_only", "early"),
    [
        ("", "", "testpaths", False, True),  # the bare `pytest` of the README and CI
        ("slow", "", "testpaths", False, True),
        ("miniworld_quick", "", "testpaths", False, True),
        ("not slow", "", "testpaths", False, False),  # the fast loop never starts the run
        ("not miniworld_quick", "", "testpaths", False, False),
        ("", "graph", "testpaths", False, False),  # -k: decided at collection
        ("", "", "args", False, False),  # named files: decided at collection
        ("", "", "testpaths", True, False),
    ],
)
def test_the_quick_run_starts_before_collection_only_for_the_whole_suite(markexpr, keyword, source, collect_only, early):
    from types import SimpleNamespace

    from rapid_agent.testing.miniworld_pytest import _runs_the_whole_suite

    sources = {"testpaths": pytest.Config.ArgsSource.TESTPATHS, "args": pytest.Config.ArgsSource.ARGS}
    config = SimpleNamespace(option=SimpleNamespace(collectonly=collect_only, keyword=keyword, markexpr=markexpr),
                             args_source=sources[source])
    assert _runs_the_whole_suite(config) is early
