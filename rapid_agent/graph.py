"""`build_rapid_graph`: the RAPID perception → reasoning graph.

    START → prepare ─┬→ caption ───┬→ reason ─→ END
                     ├→ tentative ─┘    │
                     └──────────────→ reason
                 (reason → caption when the reasoner asks for a re-caption)

`prepare` validates the request and loads images once; `caption` (the MLLM describes, conditioned
on the question; a captioner list: each captioner, concurrently) and `tentative` (the first MLLM
answers directly, for presets that use it) run concurrently; `reason` (the text-only reasoner)
answers from the caption(s), labelled one after another when there are several; with
`reasoner_samples=k` it samples k answers concurrently and puts them to a vote (`rapid_agent.voting`).
A state that already carries `captions` skips `caption`. With `caption_cache`, `caption` and
`tentative` are cached by LangGraph's node cache under the captioner's (or captioner list's)
identity, the images, the question and the preset (`rapid_agent.caching`); a run whose captioner
outputs all came from it reads `perception_cached`.

Trust (see docs/serving.md, "Threat model"):

* A run answers its own input. `prepare` reads the raw input itself (it takes the place of
  LangGraph's `__start__` node) and writes every input field (those the input left out as empty)
  and every derived field, so nothing carries over from an earlier run on the same thread, with any
  checkpointer.
* Derived fields (`image_urls`, `round`, `recaption_requests`, ...) are not part of the input. A
  command or state update can still write them, so each model-calling node re-checks, at the point
  of use, what it is about to send: only `data:` image URLs within the image limits (those `prepare`
  encoded in this process are not decoded again), every text within `max_text_chars`, the round within
  the re-caption limit, and `caption_rounds` that add up to the captions. A `prepare` that has no input to read
  (a command's `goto`, a state update) refuses to run.

Speed: a run takes three steps (prepare, perception, reasoning: `prepare` runs on the input step),
nodes and routing functions run in place (`_Inline`: no worker-thread hop, no trace of their own
beside LangGraph's node run), and each node's model calls go out together (`rapid_agent.calls`);
`benchmarks/graph_overhead.py` measures the graph against the same calls written by hand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.cache.base import BaseCache
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import get_runtime
from langgraph.types import Overwrite, RetryPolicy
from typing_extensions import NotRequired

from rapid_agent.answers import extract_answer, last_boxed, strip_think
from rapid_agent.caching import (
    CACHED_FLAG,
    PERCEPTION_KEYS,
    check_perception_keys,
    open_caption_cache,
    perception_cache_policy,
    perception_keys,
)
from rapid_agent.calls import ModelCall, ainvoke_all, invoke_all, transient
from rapid_agent.errors import ConfigError, InputError
from rapid_agent.images import ImagePolicy, check_data_url, load_images, to_data_url
from rapid_agent.models.spec import ModelResolver
from rapid_agent.prompts import (
    DEFAULT_PRESET,
    RECAPTION_INSTRUCTION,
    PromptPreset,
    format_question,
    get_preset,
    join_captions,
    parse_recaption_request,
)
from rapid_agent.state import RapidContext, RapidInput, RapidOutput, RapidState
from rapid_agent.validation import MAX_TEXT_CHARS, TextLimit, check_texts, validate_request
from rapid_agent.voting import ReasonerSample, representative, vote

INPUT_FIELDS: tuple[str, ...] = tuple(RapidInput.__annotations__)
# what `prepare` writes for an input field this run's input left out
_EMPTY_INPUT: dict[str, Any] = {"images": [], "options": None, "captions": [], "tentative_answer": None}
_NO_CONTEXT = RapidContext()
ModelLike = BaseChatModel | str


class _GraphState(RapidState):
    image_urls: NotRequired[list[str]]
    perception_keys: NotRequired[dict[str, str]]


@dataclass(frozen=True)
class _Settings:
    captioners: tuple[BaseChatModel, ...]
    reasoner: BaseChatModel | None
    preset: PromptPreset
    max_recaption_rounds: int
    reasoner_samples: int

    @property
    def captioner(self) -> BaseChatModel | None:
        """The first captioner (it gives the tentative answer), or None."""
        return self.captioners[0] if self.captioners else None


@dataclass(frozen=True)
class _Limits:
    text: TextLimit
    policy: ImagePolicy


DEFAULT_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.5, retry_on=transient)


def build_rapid_graph(
    captioner: ModelLike | Sequence[ModelLike] | None = None,
    reasoner: ModelLike | None = None,
    *,
    prompt_preset: str | PromptPreset = DEFAULT_PRESET,
    max_recaption_rounds: int = 0,
    reasoner_samples: int = 1,
    image_policy: ImagePolicy | None = None,
    retry_policy: RetryPolicy | None = DEFAULT_RETRY,
    resolver: ModelResolver | None = None,
    call_timeout_s: float | None = None,
    max_text_chars: int | TextLimit = MAX_TEXT_CHARS,
    caption_cache: BaseCache | str | Path | None = None,
    caption_cache_ttl_s: int | None = None,
    name: str = "rapid",
) -> CompiledStateGraph:
    """Build the compiled RAPID graph.

    Args:
        captioner: the MLLM (a `BaseChatModel` or a spec such as `"hf:Qwen/Qwen2.5-VL-7B-Instruct"`),
            or a list of them: each describes the image (concurrently) and the reasoner reads every
            description, labelled. May be None when every call supplies captions or a per-call
            `RapidContext.captioner`.
        reasoner: the text-only reasoner (model or spec); may be None if every call's context sets it.
        prompt_preset: name of a preset in `rapid_agent.prompts.PRESETS` (or a `PromptPreset`).
        max_recaption_rounds: how often the reasoner may ask for a re-caption (0 disables the loop).
        reasoner_samples: k reasoner calls on the same caption(s), concurrently, then a vote over
            their answers (self-consistency; see `RapidOutput`). With k > 1 a re-caption round happens
            when more than half the samples ask for one.
        image_policy: limits and allowed sources for images (defaults: `ImagePolicy()`).
        retry_policy: LangGraph retry policy for model nodes (transient backend errors).
        resolver: resolves model specs; share one between graphs to share loaded local models.
        call_timeout_s: bound on each model call; a call that exceeds it fails as a (retried) `BackendError`.
        max_text_chars: longest question, option, caption, tentative answer or re-caption request (a
            `TextLimit` also names the setting that sets it, for messages).
        caption_cache: opt-in cache of the captioner's outputs (`caption`, `tentative`): a LangGraph
            `BaseCache` (`InMemoryCache()`, `SqliteCache(path=...)`, ...), `":memory:"`, or a SQLite file
            path; keyed per call's captioner (see `rapid_agent.caching`). None: no cache.
        caption_cache_ttl_s: seconds a cached output lives (None: for ever).

    Per call, `context=RapidContext(...)` overrides captioner(s), reasoner, preset, loop rounds and samples.
    """
    if isinstance(max_recaption_rounds, bool) or not isinstance(max_recaption_rounds, int) or max_recaption_rounds < 0:
        raise ConfigError(f"max_recaption_rounds must be an integer >= 0, got {max_recaption_rounds!r:.100}")
    if not isinstance(max_text_chars, TextLimit):
        if isinstance(max_text_chars, bool) or not isinstance(max_text_chars, int) or max_text_chars < 1:
            raise ConfigError(f"max_text_chars must be an integer >= 1, got {max_text_chars!r:.100}")
        max_text_chars = TextLimit(max_chars=max_text_chars)
    if isinstance(reasoner_samples, bool) or not isinstance(reasoner_samples, int) or reasoner_samples < 1:
        raise ConfigError(f"reasoner_samples must be an integer >= 1, got {reasoner_samples!r:.100}")
    defaults = RapidContext(
        captioner=_as_listed(captioner), reasoner=reasoner, prompt_preset=get_preset(prompt_preset),
        max_recaption_rounds=max_recaption_rounds, reasoner_samples=reasoner_samples,
    )
    limits = _Limits(text=max_text_chars, policy=image_policy or ImagePolicy())
    resolver = resolver or ModelResolver()
    cache = open_caption_cache(caption_cache)

    def settings() -> _Settings:
        runtime = get_runtime(RapidContext)  # None in `update_state`, which runs the routing functions
        context = _context(runtime.context if runtime is not None else None)
        captioners = _pick(context.captioner, defaults.captioner)
        reasoner_ = _pick(context.reasoner, defaults.reasoner)
        return _Settings(
            captioners=tuple(resolver.resolve(c, "captioner") for c in _listed(captioners)),
            reasoner=resolver.resolve(reasoner_, "reasoner") if reasoner_ is not None else None,
            preset=get_preset(_pick(context.prompt_preset, defaults.prompt_preset)),
            max_recaption_rounds=_pick(context.max_recaption_rounds, defaults.max_recaption_rounds),
            reasoner_samples=_pick(context.reasoner_samples, defaults.reasoner_samples),
        )

    def prepare(state: _GraphState) -> dict[str, Any]:
        raw = state.get(START)  # this run's input, as given (absent when a command or update got here)
        if raw is None:
            raise InputError(
                "a run must start from an input (question, images, ...): commands and state updates cannot "
                "start this graph"
            )
        request = {field: raw[field] for field in INPUT_FIELDS if isinstance(raw, Mapping) and field in raw}
        validate_request(request, limits.text)
        s = settings()
        missing = _missing_percepts(s.preset, request)
        if missing and s.captioner is None:
            raise ConfigError(
                f"no captioner: the {s.preset.name!r} preset needs {' and '.join(what for what, _ in missing)} "
                f"and none is configured; pass {' and '.join(field for _, field in missing)} in the input, "
                "or a captioner (build_rapid_graph(captioner=...) or RapidContext(captioner=...))"
            )
        # given captions skip `caption`, but a re-caption round still needs the images
        needs_images = bool(missing) or (_may_recaption(s) and s.max_recaption_rounds > 0)
        images = load_images(request.get("images") or [], limits.policy) if needs_images else []
        urls = [_PreparedURL(to_data_url(image)) for image in images]
        keys = {}
        if cache is not None and s.captioners:
            keys = perception_keys(s.captioners, s.preset, urls, request["question"], request.get("options"))
        return {
            # this run's input, and nothing left over from an earlier run on the same thread
            "question": request["question"],
            **{field: request.get(field, empty) for field, empty in _EMPTY_INPUT.items()},
            "image_urls": urls,
            PERCEPTION_KEYS: keys,
            CACHED_FLAG: None,  # starts over (`all_cached`)
            "caption_rounds": [len(request["captions"])] if request.get("captions") else [],
            "recaption_requests": [],
            "reasoning": None,
            "answer": None,
            "vote": None,
            "round": 0,
            "truncated": False,
            "usage": Overwrite([]),
        }

    def route_start(state: _GraphState) -> list[Literal["caption", "tentative", "reason"]]:
        preset = settings().preset
        targets: list[Literal["caption", "tentative", "reason"]] = []
        if preset.uses_captions and not state.get("captions"):
            targets.append("caption")
        if preset.uses_tentative and not state.get("tentative_answer"):
            targets.append("tentative")
        return targets or ["reason"]

    def checked(state: _GraphState) -> _Settings:
        s = settings()
        _check_state(state, s, limits)
        if cache is not None:  # what this node computes is stored under the state's keys
            check_perception_keys(state, _need(s.captioners, "captioner"), s.preset)
        return s

    def caption_request(state: _GraphState) -> tuple[list[ModelCall], dict[str, Any]]:
        s = checked(state)
        question = format_question(state["question"], state.get("options"))
        if _recaption_pending(state):
            text = s.preset.recaption_user.format(question=question, request=state["recaption_requests"][-1])
        else:
            text = s.preset.caption_user.format(question=question)
        messages = _vision_messages(s.preset.caption_system, state, text)
        return [ModelCall(captioner, messages) for captioner in _need(s.captioners, "captioner")], {}

    def caption_update(state: _GraphState, replies: list[AIMessage]) -> dict[str, Any]:
        return {
            "captions": [*(state.get("captions") or []), *(reply.text for reply in replies)],
            "caption_rounds": [*(state.get("caption_rounds") or []), len(replies)],
            CACHED_FLAG: False,
        }

    def tentative_request(state: _GraphState) -> tuple[list[ModelCall], dict[str, Any]]:
        s = checked(state)
        text = format_question(state["question"], state.get("options"))
        captioner = _need(s.captioners, "captioner")[0]
        return [ModelCall(captioner, _vision_messages(s.preset.tentative_system, state, text))], {}

    def tentative_update(state: _GraphState, replies: list[AIMessage]) -> dict[str, Any]:
        return {"tentative_answer": replies[0].text, CACHED_FLAG: False}

    def reason_request(state: _GraphState) -> tuple[list[ModelCall], dict[str, Any]]:
        s = settings()
        if s.reasoner is None:
            raise ConfigError("no reasoner: pass one to build_rapid_graph or in RapidContext(reasoner=...)")
        _check_state(state, s, limits, sends_images=False)
        captions = state.get("captions") or []
        if s.preset.uses_captions and not captions:
            raise InputError("captions: the reasoner has no caption to read (state field captions is empty)")
        caption = join_captions(captions, state.get("recaption_requests") or [], state.get("caption_rounds"))
        user = s.preset.reasoner_user.format(
            caption=caption if captions else "",
            question=format_question(state["question"], state.get("options")),
            tentative=state.get("tentative_answer") or "",
        )
        may_ask = _may_recaption(s) and state.get("round", 0) < s.max_recaption_rounds
        if may_ask:
            user += RECAPTION_INSTRUCTION
        messages = [SystemMessage(s.preset.reasoner_system), HumanMessage(user)]
        return [ModelCall(s.reasoner, messages, samples=s.reasoner_samples)], {"may_ask": may_ask}

    def reason_update(state: _GraphState, replies: list[AIMessage], may_ask: bool) -> dict[str, Any]:
        options = state.get("options")
        read = [_read_reply(reply, options, may_ask) for reply in replies]
        asked = [(sample, request) for sample, request in read if request is not None]
        if asked and 2 * len(asked) > len(read):  # k = 1: it asked; k > 1: more than half the samples asked
            sample, request = asked[0]
            return {
                "reasoning": sample["reasoning"],
                "answer": None,
                "truncated": False,
                "vote": None,
                "recaption_requests": [*(state.get("recaption_requests") or []), request],
                "round": state.get("round", 0) + 1,
            }
        samples = [sample for sample, _ in read]
        if len(samples) == 1:
            return {**samples[0], "vote": None}
        result = vote(samples, options)
        chosen = representative(samples, result, options)
        return {
            "reasoning": chosen["reasoning"] if chosen else None,
            "answer": result["answer"],
            "truncated": chosen["truncated"] if chosen else False,
            "vote": result,
        }

    def route_after_reason(state: _GraphState) -> Literal["caption", "__end__"]:
        return "caption" if _recaption_pending(state) else END

    builder = StateGraph(_GraphState, context_schema=RapidContext, input_schema=RapidInput, output_schema=RapidOutput)
    builder.add_node("prepare", _Inline(prepare, name="prepare"))
    cached = {kind: perception_cache_policy(kind, caption_cache_ttl_s) if cache is not None else None for kind in ("caption", "tentative")}
    builder.add_node("caption", _model_node("caption", caption_request, caption_update, call_timeout_s),
                     retry_policy=retry_policy, cache_policy=cached["caption"])
    builder.add_node("tentative", _model_node("tentative", tentative_request, tentative_update, call_timeout_s),
                     retry_policy=retry_policy, cache_policy=cached["tentative"])
    builder.add_node("reason", _model_node("reason", reason_request, reason_update, call_timeout_s), retry_policy=retry_policy)
    builder.add_edge(START, "prepare")
    builder.add_conditional_edges("prepare", _Inline(route_start, name="route_start"), ["caption", "tentative", "reason"])
    builder.add_edge("caption", "reason")
    builder.add_edge("tentative", "reason")
    builder.add_conditional_edges("reason", _Inline(route_after_reason, name="route_after_reason"), ["caption", END])
    return _prepare_on_input(builder.compile(name=name, cache=cache))


def _prepare_on_input(graph: CompiledStateGraph) -> CompiledStateGraph:
    """Run `prepare` on the input step, reading the raw input, in place of LangGraph's `__start__` node.

    `__start__` would write the input fields a step before `prepare` runs; `prepare` writes them itself
    (with empties for those left out), so a run takes one step less and `prepare` knows exactly what this
    run's input gave. It still answers a command's `goto="prepare"` (with nothing to read: refused).
    """
    del graph.nodes[START]
    prepare = graph.nodes["prepare"]
    prepare.triggers = [START, *prepare.triggers]
    prepare.channels = [*prepare.channels, START]
    graph.validate()
    return graph


def _context(context: Any) -> RapidContext:
    if context is None:
        return _NO_CONTEXT
    if isinstance(context, RapidContext):
        return context
    if isinstance(context, Mapping):
        return RapidContext(**context)
    raise ConfigError(
        f"context must be a RapidContext or an object with fields among {sorted(RapidContext.model_fields)}, "
        f"got {type(context).__name__}"
    )


def _missing_percepts(preset: PromptPreset, request: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What this run needs from the captioner, as (what, input field): a caption and/or a tentative answer."""
    missing = []
    if preset.uses_captions and not request.get("captions"):
        missing.append(("a caption", "captions"))
    if preset.uses_tentative and not request.get("tentative_answer"):
        missing.append(("a tentative answer", "tentative_answer"))
    return missing


def _listed(models: ModelLike | tuple[ModelLike, ...] | None) -> tuple[ModelLike, ...]:
    return () if models is None else models if isinstance(models, tuple) else (models,)


def _as_listed(models: ModelLike | Sequence[ModelLike] | None) -> ModelLike | tuple[ModelLike, ...] | None:
    """A build-time captioner setting as `RapidContext` takes it (a list becomes a tuple)."""
    return models if models is None or isinstance(models, (BaseChatModel, str)) else tuple(models)


def _may_recaption(s: _Settings) -> bool:
    return bool(s.captioners) and s.preset.uses_captions


def _need(models: tuple[BaseChatModel, ...], role: str) -> tuple[BaseChatModel, ...]:
    if not models:
        raise ConfigError(f"no {role}: configure one (build_rapid_graph or RapidContext)")
    return models


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _recaption_pending(state: Mapping[str, Any]) -> bool:
    """Every round adds an entry to `caption_rounds`, so a request is unanswered while requests >= rounds."""
    rounds = state.get("caption_rounds") or []
    return bool(rounds) and len(state.get("recaption_requests") or []) >= len(rounds)


def _check_state(state: Mapping[str, Any], s: _Settings, limits: _Limits, *, sends_images: bool = True) -> None:
    """Re-check, before a model call, the state fields it reads: derived fields cannot be set from outside.

    Image URLs a call sends are checked in full (`check_data_url`), but for those `prepare` made in this
    process (`_PreparedURL`); a call that sends none (`reason`) only refuses image URLs that are no
    `data:image/` URL, which no run of this graph writes."""
    validate_request(state, limits.text)
    requests = state.get("recaption_requests") or []
    if not isinstance(requests, list) or not all(isinstance(r, str) for r in requests):
        raise InputError("state field recaption_requests must be a list of strings")
    check_texts("recaption_requests", requests, limits.text)
    round_ = state.get("round", 0)
    if isinstance(round_, bool) or not isinstance(round_, int) or not 0 <= round_ <= s.max_recaption_rounds:
        raise InputError(
            f"state field round is {round_!r:.50}; this run allows 0 to {s.max_recaption_rounds} re-caption rounds"
        )
    if len(requests) != round_:
        raise InputError(f"state fields disagree: {len(requests)} re-caption requests after {round_} rounds")
    _check_caption_rounds(state, round_)
    urls = state.get("image_urls") or []
    if not isinstance(urls, list) or len(urls) > limits.policy.max_images:
        raise InputError(f"state field image_urls must be a list of at most {limits.policy.max_images} data: URLs")
    for i, url in enumerate(urls):
        if sends_images:
            if type(url) is not _PreparedURL:  # made by `prepare` in this process from checked images
                check_data_url(url, limits.policy, f"image {i}")
        elif not isinstance(url, str) or not url.startswith("data:image/"):
            raise InputError(f"state field image_urls[{i}] is not a data:image/ URL: {url!r:.60}")


class _PreparedURL(str):
    """A `data:` URL that `prepare` encoded from images it loaded under the image policy.

    Passed by reference from node to node within a run, it needs no second check; anything that comes
    from outside the process (a JSON command or state update, a checkpoint: stored as a plain `str`)
    is checked in full."""

    __slots__ = ()


def _check_caption_rounds(state: Mapping[str, Any], round_: int) -> None:
    """`caption_rounds` splits the captions into rounds: one entry per round so far (the current one
    may be pending), each at least 1, adding up to the number of captions."""
    rounds, captions = state.get("caption_rounds") or [], state.get("captions") or []
    if (
        not isinstance(rounds, list)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in rounds)
        or sum(rounds) != len(captions)
        or len(rounds) not in (round_, round_ + 1)
    ):
        raise InputError(
            f"state fields disagree: caption_rounds {rounds!r:.100} for {len(captions)} captions after {round_} rounds"
        )


def _vision_messages(system: str, state: Mapping[str, Any], text: str) -> list[BaseMessage]:
    """System prompt, then the images (data: URLs checked by `_check_state`) and the text."""
    parts: list[str | dict] = [{"type": "image_url", "image_url": {"url": url}} for url in state.get("image_urls") or []]
    parts.append({"type": "text", "text": text})
    return [SystemMessage(system), HumanMessage(parts)]


def _read_reply(reply: AIMessage, options: Sequence[str] | None, may_ask: bool) -> tuple[ReasonerSample, str | None]:
    """A reasoner reply as a sample (its reasoning, answer and truncation), and its re-caption request if it asked."""
    content, thinking = _reply_parts(reply)
    reasoning = f"<think>\n{thinking}\n</think>\n\n{content}" if thinking else content
    request = parse_recaption_request(strip_think(content)) if may_ask else None
    if request is not None:
        return ReasonerSample(reasoning=reasoning, answer=None, truncated=False), request
    # cut off inside its thinking, or by the token limit before a boxed answer: no answer to grade
    cut = (reply.response_metadata or {}).get("finish_reason") == "length"
    truncated = _unclosed_think(content) or (cut and last_boxed(strip_think(content)) is None)
    answer = extract_answer(reasoning, options, truncated=truncated)  # the answer contract
    return ReasonerSample(reasoning=reasoning, answer=answer, truncated=truncated), None


def _reply_parts(reply: AIMessage) -> tuple[str, str | None]:
    """(content, thinking): a reasoning parser's separate thinking (vLLM/SGLang `reasoning_content`,
    or standard `reasoning` content blocks) is kept apart from the reply it grades."""
    extra = reply.additional_kwargs or {}
    thinking = next((extra[k] for k in ("reasoning_content", "reasoning") if isinstance(extra.get(k), str)), None)
    if thinking is None and isinstance(reply.content, list):
        blocks = [b.get("reasoning") for b in reply.content if isinstance(b, dict) and b.get("type") == "reasoning"]
        thinking = "".join(b for b in blocks if isinstance(b, str)) or None
    return reply.text, thinking or None


def _unclosed_think(text: str) -> bool:
    """True when `text` ends inside a `<think>` block (the reasoner stopped while thinking)."""
    lowered = text.lower()
    opened = lowered.rfind("<think>")
    return opened >= 0 and lowered.find("</think>", opened) < 0


class _Inline(Runnable):
    """A node or routing function run in place, sync or async: no worker-thread hop (LangGraph runs a
    plain sync function on one in async runs) and no trace of its own (LangGraph traces the node).
    The run's config is made current, so `get_runtime` works in routing functions too."""

    def __init__(
        self, func: Callable[[Any], Any], afunc: Callable[[Any], Awaitable[Any]] | None = None, *, name: str,
    ) -> None:
        self.func, self.afunc, self.name = func, afunc, name

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        token = var_child_runnable_config.set(config)
        try:
            return self.func(input)
        finally:
            var_child_runnable_config.reset(token)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if self.afunc is None:
            return self.invoke(input, config)
        token = var_child_runnable_config.set(config)
        try:
            return await self.afunc(input)
        finally:
            var_child_runnable_config.reset(token)


def _model_node(node: str, request, update, timeout_s: float | None) -> _Inline:
    """A node that builds its model calls, makes them together (`rapid_agent.calls`) and turns the
    replies into a state update with one usage record per call; `timeout_s` bounds each call."""

    def finish(state: dict[str, Any], replies: list, extra: dict[str, Any]) -> dict[str, Any]:
        result = update(state, [reply.message for reply in replies], **extra)
        result["usage"] = [reply.usage(node, state.get("round", 0)) for reply in replies]
        return result

    def run(state: dict[str, Any]) -> dict[str, Any]:
        calls, extra = request(state)
        return finish(state, invoke_all(node, calls, timeout_s), extra)

    async def arun(state: dict[str, Any]) -> dict[str, Any]:
        calls, extra = request(state)
        return finish(state, await ainvoke_all(node, calls, timeout_s), extra)

    return _Inline(run, arun, name=node)
