"""The graph's opt-in perception cache (`build_rapid_graph(caption_cache=...)`, `rapid_agent.caching`).

A captioner output is reused only for the same captioner (its identity: for local weights their files),
images, question, options, preset and decoding; anything else, a retrained captioner included, misses.
"""

from __future__ import annotations

import asyncio
import base64
import io
import shutil

import pytest
from langgraph.cache.memory import InMemoryCache
from langgraph.checkpoint.memory import InMemorySaver
from PIL import Image

from rapid_agent import build_rapid_graph
from rapid_agent.caching import MarkCachedHits, open_caption_cache
from rapid_agent.errors import ConfigError, InputError
from rapid_agent.models.identity import chat_model_identity, model_identity
from rapid_agent.models.spec import GenerationSettings, ModelResolver
from rapid_agent.prompts import get_preset
from rapid_agent.testing import ScriptedChatModel


class LabelledCaptioner(ScriptedChatModel):
    """A scripted captioner whose `label` is a LangChain parameter, and so part of its identity
    (any chat model is told apart as LangChain's own LLM cache tells it: class and parameters)."""

    label: str = "a"

    @property
    def _identifying_params(self) -> dict:
        return {"label": self.label}


def captioner(label: str = "a", temperature: float | None = None) -> LabelledCaptioner:
    model = LabelledCaptioner(respond=lambda m: f"{label}: three red circles", label=label)
    return model if temperature is None else model.model_copy(update={"temperature": temperature})


def reasoner() -> ScriptedChatModel:
    return ScriptedChatModel(respond=lambda m: "\\boxed{3}")


def square(colour: str) -> str:
    """A 16x16 PNG as a data: URL (thread checkpoints serialise the input)."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


REQUEST = {"images": [square("red")], "question": "How many circles?", "options": ["2", "3"]}


def test_a_repeated_call_is_served_from_the_cache():
    cap, rea = captioner(), reasoner()
    graph = build_rapid_graph(cap, rea, caption_cache=":memory:")
    first, second = graph.invoke(REQUEST), graph.invoke(REQUEST)

    assert len(cap.calls) == 1 and len(rea.calls) == 2  # reasoning is never cached
    assert (first["perception_cached"], second["perception_cached"]) == (False, True)
    assert second["captions"] == first["captions"] == ["a: three red circles"] and second["answer"] == "3"
    assert [u["node"] for u in second["usage"]] == ["caption", "reason"]  # the cached call's usage, replayed
    assert build_rapid_graph(cap, rea).invoke(REQUEST)["perception_cached"] is False  # no cache: always computed


@pytest.mark.parametrize(
    ("change", "context"),
    [
        ({"images": [square("blue")]}, None),
        ({"question": "How many squares?"}, None),
        ({"options": ["3", "4"]}, None),
        ({}, {"prompt_preset": get_preset("paper-train").model_copy(update={"version": 2})}),  # same prompts, new key
        ({}, {"captioner": captioner("b")}),  # another captioner for this call
        ({}, {"captioner": captioner("a", temperature=0.7)}),  # the same one decoding otherwise
    ],
    ids=["image", "question", "options", "preset", "captioner", "decoding"],
)
def test_anything_that_changes_the_caption_misses(change, context):
    cap = captioner()
    graph = build_rapid_graph(cap, reasoner(), caption_cache=InMemoryCache())
    graph.invoke(REQUEST)
    other = graph.invoke(REQUEST | change, context=context)

    assert other["perception_cached"] is False
    models = {id(m): m for m in (cap, (context or {}).get("captioner", cap))}
    assert sum(len(m.calls) for m in models.values()) == 2  # computed twice
    assert graph.invoke(REQUEST)["perception_cached"] is True  # the first entry is still there


def test_per_call_captioners_are_cached_under_their_own_identity():
    a, b = captioner("a"), captioner("b")
    graph = build_rapid_graph(a, reasoner(), caption_cache=":memory:")
    outputs = [graph.invoke(REQUEST, context=context) for context in (None, {"captioner": b}, None, {"captioner": b})]

    assert [o["perception_cached"] for o in outputs] == [False, False, True, True]
    assert [o["captions"][0][0] for o in outputs] == ["a", "b", "a", "b"]
    assert (len(a.calls), len(b.calls)) == (1, 1)


def test_tentative_answers_are_cached_and_the_flag_covers_both():
    cap = captioner()
    graph = build_rapid_graph(cap, reasoner(), prompt_preset="paper-eval", caption_cache=":memory:")
    first, second = graph.invoke(REQUEST), graph.invoke(REQUEST)

    assert len(cap.calls) == 2  # caption and tentative answer, once each
    assert (first["perception_cached"], second["perception_cached"]) == (False, True)
    assert second["tentative_answer"] == first["tentative_answer"]
    given = graph.invoke(REQUEST | {"captions": ["given"], "tentative_answer": "3"})
    assert given["perception_cached"] is None  # the captioner was asked nothing


def test_recaption_rounds_are_keyed_by_the_captions_and_requests_before_them():
    cap = ScriptedChatModel(respond=lambda m: "detail" if "needs more detail" in m[-1].text else "overview")
    rea = ScriptedChatModel(respond=lambda m: "\\boxed{7}" if "detail" in m[-1].text.split("overview", 1)[-1]
                            else "<recaption>count the small dots</recaption>")
    graph = build_rapid_graph(cap, rea, max_recaption_rounds=2, caption_cache=":memory:")
    first, second = graph.invoke(REQUEST), graph.invoke(REQUEST)

    assert first["captions"] == second["captions"] == ["overview", "detail"]
    assert len(cap.calls) == 2 and (first["perception_cached"], second["perception_cached"]) == (False, True)


def test_async_runs_use_the_cache():
    cap = captioner()
    graph = build_rapid_graph(cap, reasoner(), caption_cache=":memory:")

    async def twice():
        return [await graph.ainvoke(REQUEST), await graph.ainvoke(REQUEST)]

    assert [o["perception_cached"] for o in asyncio.run(twice())] == [False, True]
    assert len(cap.calls) == 1


def test_a_sqlite_cache_outlives_its_graph(tmp_path):
    path = tmp_path / "cache" / "perception.sqlite"  # its folder is made
    first = build_rapid_graph(captioner(), reasoner(), caption_cache=path).invoke(REQUEST)
    cap = captioner()
    later = build_rapid_graph(cap, reasoner(), caption_cache=str(path)).invoke(REQUEST)  # another graph, same file

    assert (first["perception_cached"], later["perception_cached"]) == (False, True)
    assert cap.calls == [] and later["captions"] == first["captions"]


def test_a_retrained_captioner_misses(tiny_captioner_path, tmp_path):
    from safetensors.torch import load_file, save_file

    weights, cache = tmp_path / "captioner", tmp_path / "perception.sqlite"
    shutil.copytree(tiny_captioner_path, weights)
    spec = f"hf:{weights}"

    def run() -> dict:  # a fresh graph and resolver each time, as a new process would have
        resolver = ModelResolver({"captioner": GenerationSettings(max_new_tokens=4)})
        graph = build_rapid_graph(spec, reasoner(), resolver=resolver, caption_cache=cache)
        out = graph.invoke(REQUEST)
        # the graph's identity of the loaded model is the eval harness's identity of its spec
        assert chat_model_identity(resolver.resolve(spec, "captioner")) == model_identity(spec)
        return out

    assert [run()["perception_cached"], run()["perception_cached"]] == [False, True]
    tensors = load_file(weights / "model.safetensors")
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 0.5  # "retrained" in place: same spec, other weights
    save_file(tensors, weights / "model.safetensors", metadata={"format": "pt"})
    assert [run()["perception_cached"], run()["perception_cached"]] == [False, True]


def test_model_objects_are_identified_as_their_specs():
    from langchain_openai import ChatOpenAI

    def served(port: int) -> ChatOpenAI:
        return ChatOpenAI(model="m", base_url=f"http://127.0.0.1:{port}/v1", api_key="k")

    assert chat_model_identity(served(1)) == model_identity("openai:m@http://127.0.0.1:1/v1") == "openai:m@http://127.0.0.1:1/v1"
    assert chat_model_identity(served(2)) != chat_model_identity(served(1))  # another server, maybe other weights
    assert chat_model_identity(captioner("a")) == chat_model_identity(captioner("a")) != chat_model_identity(captioner("b"))


def test_forged_cache_keys_in_the_state_are_refused():
    cap = captioner()
    graph = build_rapid_graph(cap, reasoner(), caption_cache=":memory:").copy(update={"checkpointer": InMemorySaver()})
    config = {"configurable": {"thread_id": "t"}}
    graph.invoke(REQUEST, config)
    # another run's key, written into this thread, must not store this thread's caption under it
    forged = {"caption": "forged", "recaption": "x", "tentative": "y"}
    graph.update_state(config, {"captions": [], "caption_rounds": [], "perception_keys": forged}, as_node="prepare")
    with pytest.raises(InputError, match="perception_keys"):
        graph.invoke(None, config)
    assert len(cap.calls) == 1
    assert graph.invoke(REQUEST, config)["perception_cached"] is True


def test_cache_settings(tmp_path):
    assert open_caption_cache(None) is None
    assert isinstance(open_caption_cache(":memory:").inner, InMemoryCache)
    wrapped = open_caption_cache(InMemoryCache())
    assert isinstance(wrapped, MarkCachedHits) and open_caption_cache(wrapped) is wrapped
    (tmp_path / "notes.txt").write_text("not a database " * 100)
    for bad, message in [(tmp_path / "notes.txt", "cannot be used"), ("", "caption_cache must be"), (3, "caption_cache must be")]:
        with pytest.raises(ConfigError, match=message):
            build_rapid_graph(captioner(), reasoner(), caption_cache=bad)


def test_served_graphs_and_their_tools_share_the_configured_cache(tiny_models, tmp_path):
    """`RAPID_CAPTION_CACHE` (the MCP servers' `--caption-cache`): the served graphs and the tool graphs
    over them (what MCP calls) read one cache; a bad path fails at start-up, naming the variable."""
    from rapid_agent.serving.graphs import ServedGraphs
    from rapid_agent.serving.settings import ServeSettings

    captioner_path, reasoner_path = tiny_models
    env = {"RAPID_CAPTIONER": f"hf:{captioner_path}", "RAPID_REASONER": f"hf:{reasoner_path}",
           "RAPID_CAPTION_MAX_NEW_TOKENS": "4", "RAPID_REASON_MAX_NEW_TOKENS": "4",
           "RAPID_CAPTION_CACHE": str(tmp_path / "served.sqlite")}
    graphs = ServedGraphs(ServeSettings.from_env(env))
    model = graphs.resolver.resolve(env["RAPID_CAPTIONER"], "captioner")
    request = {"images": [square("red")], "question": "How many circles?"}

    assert [graphs.graph("rapid").invoke(request)["perception_cached"] for _ in range(2)] == [False, True]
    described = graphs.graph("describe_image").invoke({"image": square("red"), "question": "How many circles?"})
    assert model.generate_calls == 1 and described["caption"]
    assert ServedGraphs(ServeSettings.from_env(env)).graph("rapid_recaption").invoke(request)["perception_cached"] is True

    (tmp_path / "notes.txt").write_text("not a database " * 100)
    with pytest.raises(ConfigError, match="RAPID_CAPTION_CACHE"):
        ServedGraphs(ServeSettings.from_env(env | {"RAPID_CAPTION_CACHE": str(tmp_path / "notes.txt")}))
