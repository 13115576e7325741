"""`build_rapid_graph`: the RAPID perception → reasoning graph.

    START → prepare ─┬→ caption ───┬→ reason ─→ END
                     ├→ tentative ─┘    │
                     └──────────────→ reason
                 (reason → caption when the reasoner asks for a re-caption)

`prepare` validates the request and loads images once; `caption` (the MLLM describes, conditioned
on the question) and `tentative` (the MLLM answers directly, for presets that use it) run
concurrently; `reason` (the text-only reasoner) answers from the caption(s). A state that already
carries `captions` skips `caption`. With `caption_cache`, `caption` and `tentative` are cached by
LangGraph's node cache under the captioner's identity, the images, the question and the preset
(`rapid_agent.caching`); a run whose captioner outputs all came from it reads `perception_cached`.

Trust (see docs/serving.md, "Threat model"):

* A run answers its own input. A hidden node records which input fields this run's input gave;
  `prepare` clears every other input field and every derived field, so nothing carries over from an
  earlier run on the same thread, with any checkpointer.
* Derived fields (`image_urls`, `round`, `recaption_requests`, ...) are not part of the input. A
  command or state update can still write them, so each model-calling node re-checks, at the point
  of use, what it is about to send: only `data:` image URLs within the image limits, every text within
  `max_text_chars`, and the round within the re-caption limit. A run that did not start from an input
  (a command, a resumed `prepare`) is refused by `prepare`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableLambda
from langgraph.cache.base import BaseCache
from langgraph.channels import EphemeralValue
from langgraph.constants import TAG_HIDDEN
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel import NodeBuilder
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
from rapid_agent.errors import BackendError, ConfigError, InputError, RapidError
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
from rapid_agent.state import NodeUsage, RapidContext, RapidInput, RapidOutput, RapidState
from rapid_agent.validation import MAX_TEXT_CHARS, TextLimit, check_texts, validate_request

INPUT_FIELDS: tuple[str, ...] = tuple(RapidInput.__annotations__)
_SUPPLIED = "supplied_fields"  # channel: the input fields this run's input gave (visible to `prepare` only)
_MARK_INPUT = "__mark_input__"
# what `prepare` writes for an input field this run's input left out
_EMPTY_INPUT: dict[str, Any] = {"images": [], "options": None, "captions": [], "tentative_answer": None}


class _GraphState(RapidState):
    image_urls: NotRequired[list[str]]
    perception_keys: NotRequired[dict[str, str]]
    supplied_fields: NotRequired[Annotated[tuple[str, ...], EphemeralValue]]


@dataclass(frozen=True)
class _Settings:
    captioner: BaseChatModel | None
    reasoner: BaseChatModel | None
    preset: PromptPreset
    max_recaption_rounds: int


@dataclass(frozen=True)
class _Limits:
    text: TextLimit
    policy: ImagePolicy


def _transient(exc: BaseException) -> bool:
    """Retry connection problems, time-outs, rate limits and server errors; never bad input."""
    if isinstance(exc, RapidError):
        return isinstance(exc, BackendError) and exc.transient
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    status = getattr(exc, "status_code", None)  # openai / anthropic / httpx-style API errors
    if isinstance(status, int):
        return status in (408, 429) or status >= 500
    name = type(exc).__name__
    return "Connection" in name or "Timeout" in name


DEFAULT_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.5, retry_on=_transient)


def build_rapid_graph(
    captioner: BaseChatModel | str | None = None,
    reasoner: BaseChatModel | str | None = None,
    *,
    prompt_preset: str | PromptPreset = DEFAULT_PRESET,
    max_recaption_rounds: int = 0,
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
        captioner: the MLLM (a `BaseChatModel` or a spec such as `"hf:Qwen/Qwen2.5-VL-7B-Instruct"`).
            May be None when every call supplies captions or a per-call `RapidContext.captioner`.
        reasoner: the text-only reasoner (model or spec); may be None if every call's context sets it.
        prompt_preset: name of a preset in `rapid_agent.prompts.PRESETS` (or a `PromptPreset`).
        max_recaption_rounds: how often the reasoner may ask for a re-caption (0 disables the loop).
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

    Per call, `context=RapidContext(...)` overrides captioner, reasoner, preset and loop rounds.
    """
    if isinstance(max_recaption_rounds, bool) or not isinstance(max_recaption_rounds, int) or max_recaption_rounds < 0:
        raise ConfigError(f"max_recaption_rounds must be an integer >= 0, got {max_recaption_rounds!r:.100}")
    if not isinstance(max_text_chars, TextLimit):
        if isinstance(max_text_chars, bool) or not isinstance(max_text_chars, int) or max_text_chars < 1:
            raise ConfigError(f"max_text_chars must be an integer >= 1, got {max_text_chars!r:.100}")
        max_text_chars = TextLimit(max_chars=max_text_chars)
    defaults = RapidContext(
        captioner=captioner, reasoner=reasoner, prompt_preset=get_preset(prompt_preset),
        max_recaption_rounds=max_recaption_rounds,
    )
    limits = _Limits(text=max_text_chars, policy=image_policy or ImagePolicy())
    resolver = resolver or ModelResolver()
    cache = open_caption_cache(caption_cache)

    def settings() -> _Settings:
        runtime = get_runtime(RapidContext)  # None in `update_state`, which runs the routing functions
        context = _context(runtime.context if runtime is not None else None)
        captioner_ = _pick(context.captioner, defaults.captioner)
        reasoner_ = _pick(context.reasoner, defaults.reasoner)
        return _Settings(
            captioner=resolver.resolve(captioner_, "captioner") if captioner_ is not None else None,
            reasoner=resolver.resolve(reasoner_, "reasoner") if reasoner_ is not None else None,
            preset=get_preset(_pick(context.prompt_preset, defaults.prompt_preset)),
            max_recaption_rounds=_pick(context.max_recaption_rounds, defaults.max_recaption_rounds),
        )

    def prepare(state: _GraphState) -> dict[str, Any]:
        supplied = state.get(_SUPPLIED)
        if supplied is None:
            raise InputError(
                "a run must start from an input (question, images, ...): commands, state updates and "
                "resumed checkpoints cannot start this graph"
            )
        request = {field: state[field] for field in supplied if field in state}
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
        urls = [to_data_url(image) for image in images]
        keys = {}
        if cache is not None and s.captioner is not None:
            keys = perception_keys(s.captioner, s.preset, urls, request["question"], request.get("options"))
        return {
            # this run's input, and nothing left over from an earlier run on the same thread
            **{field: empty for field, empty in _EMPTY_INPUT.items() if field not in request},
            "image_urls": urls,
            PERCEPTION_KEYS: keys,
            CACHED_FLAG: None,  # starts over (`all_cached`)
            "recaption_requests": [],
            "reasoning": None,
            "answer": None,
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
            check_perception_keys(state, _need(s.captioner, "captioner"), s.preset)
        return s

    def caption_request(state: _GraphState) -> tuple[BaseChatModel, list[BaseMessage], dict[str, Any]]:
        s = checked(state)
        question = format_question(state["question"], state.get("options"))
        if _recaption_pending(state):
            text = s.preset.recaption_user.format(question=question, request=state["recaption_requests"][-1])
        else:
            text = s.preset.caption_user.format(question=question)
        return _need(s.captioner, "captioner"), _vision_messages(s.preset.caption_system, state, text), {}

    def caption_update(state: _GraphState, reply: AIMessage) -> dict[str, Any]:
        return {"captions": [*(state.get("captions") or []), reply.text], CACHED_FLAG: False}

    def tentative_request(state: _GraphState) -> tuple[BaseChatModel, list[BaseMessage], dict[str, Any]]:
        s = checked(state)
        text = format_question(state["question"], state.get("options"))
        return _need(s.captioner, "captioner"), _vision_messages(s.preset.tentative_system, state, text), {}

    def tentative_update(state: _GraphState, reply: AIMessage) -> dict[str, Any]:
        return {"tentative_answer": reply.text, CACHED_FLAG: False}

    def reason_request(state: _GraphState) -> tuple[BaseChatModel, list[BaseMessage], dict[str, Any]]:
        s = settings()
        if s.reasoner is None:
            raise ConfigError("no reasoner: pass one to build_rapid_graph or in RapidContext(reasoner=...)")
        _check_state(state, s, limits)
        captions = state.get("captions") or []
        if s.preset.uses_captions and not captions:
            raise InputError("captions: the reasoner has no caption to read (state field captions is empty)")
        user = s.preset.reasoner_user.format(
            caption=join_captions(captions, state.get("recaption_requests") or []) if captions else "",
            question=format_question(state["question"], state.get("options")),
            tentative=state.get("tentative_answer") or "",
        )
        may_ask = _may_recaption(s) and state.get("round", 0) < s.max_recaption_rounds
        if may_ask:
            user += RECAPTION_INSTRUCTION
        messages = [SystemMessage(s.preset.reasoner_system), HumanMessage(user)]
        return s.reasoner, messages, {"may_ask": may_ask}

    def reason_update(state: _GraphState, reply: AIMessage, may_ask: bool) -> dict[str, Any]:
        content, thinking = _reply_parts(reply)
        reasoning = f"<think>\n{thinking}\n</think>\n\n{content}" if thinking else content
        request = parse_recaption_request(strip_think(content)) if may_ask else None
        if request is not None:
            return {
                "reasoning": reasoning,
                "answer": None,
                "truncated": False,
                "recaption_requests": [*(state.get("recaption_requests") or []), request],
                "round": state.get("round", 0) + 1,
            }
        # cut off inside its thinking, or by the token limit before a boxed answer: no answer to grade
        cut = (reply.response_metadata or {}).get("finish_reason") == "length"
        truncated = _unclosed_think(content) or (cut and last_boxed(strip_think(content)) is None)
        answer = extract_answer(reasoning, state.get("options"), truncated=truncated)  # the answer contract
        return {"reasoning": reasoning, "answer": answer, "truncated": truncated}

    def route_after_reason(state: _GraphState) -> Literal["caption", "__end__"]:
        return "caption" if _recaption_pending(state) else END

    builder = StateGraph(_GraphState, context_schema=RapidContext, input_schema=RapidInput, output_schema=RapidOutput)
    builder.add_node("prepare", prepare)
    cached = {kind: perception_cache_policy(kind, caption_cache_ttl_s) if cache is not None else None for kind in ("caption", "tentative")}
    builder.add_node("caption", _model_node("caption", caption_request, caption_update, call_timeout_s),
                     retry_policy=retry_policy, cache_policy=cached["caption"])
    builder.add_node("tentative", _model_node("tentative", tentative_request, tentative_update, call_timeout_s),
                     retry_policy=retry_policy, cache_policy=cached["tentative"])
    builder.add_node("reason", _model_node("reason", reason_request, reason_update, call_timeout_s), retry_policy=retry_policy)
    builder.add_edge(START, "prepare")
    builder.add_conditional_edges("prepare", route_start, ["caption", "tentative", "reason"])
    builder.add_edge("caption", "reason")
    builder.add_edge("tentative", "reason")
    builder.add_conditional_edges("reason", route_after_reason, ["caption", END])
    return _mark_input(builder.compile(name=name, cache=cache))


def _mark_input(graph: CompiledStateGraph) -> CompiledStateGraph:
    """Add a hidden node that runs with START on every input and records which input fields it gave.

    It reads the raw input (the `__start__` channel), so `prepare` can tell this run's input from
    values an earlier run left in the thread's checkpoint; the record is ephemeral (one step).
    """
    graph.nodes[_MARK_INPUT] = (
        NodeBuilder().subscribe_only(START).do(_supplied_fields).write_to(_SUPPLIED).meta(TAG_HIDDEN).build()
    )
    graph.validate()
    return graph


def _supplied_fields(input_: Any) -> tuple[str, ...]:
    return tuple(field for field in INPUT_FIELDS if field in input_) if isinstance(input_, Mapping) else ()


def _context(context: Any) -> RapidContext:
    if context is None:
        return RapidContext()
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


def _may_recaption(s: _Settings) -> bool:
    return s.captioner is not None and s.preset.uses_captions


def _need(model: BaseChatModel | None, role: str) -> BaseChatModel:
    if model is None:
        raise ConfigError(f"no {role}: configure one (build_rapid_graph or RapidContext)")
    return model


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _recaption_pending(state: dict[str, Any]) -> bool:
    """Every re-caption adds one caption, so a request is unanswered while requests >= captions."""
    captions = state.get("captions") or []
    return bool(captions) and len(state.get("recaption_requests") or []) >= len(captions)


def _check_state(state: Mapping[str, Any], s: _Settings, limits: _Limits) -> None:
    """Re-check, before a model call, the state fields it reads: derived fields cannot be set from outside."""
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
    urls = state.get("image_urls") or []
    if not isinstance(urls, list) or len(urls) > limits.policy.max_images:
        raise InputError(f"state field image_urls must be a list of at most {limits.policy.max_images} data: URLs")
    for i, url in enumerate(urls):
        check_data_url(url, limits.policy, f"image {i}")


def _vision_messages(system: str, state: Mapping[str, Any], text: str) -> list[BaseMessage]:
    """System prompt, then the images (data: URLs checked by `_check_state`) and the text."""
    parts: list[str | dict] = [{"type": "image_url", "image_url": {"url": url}} for url in state.get("image_urls") or []]
    parts.append({"type": "text", "text": text})
    return [SystemMessage(system), HumanMessage(parts)]


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


def _usage(node: str, round_: int, model: BaseChatModel, reply: AIMessage, latency: float) -> NodeUsage:
    meta = reply.usage_metadata or {}
    return NodeUsage(
        node=node,
        round=round_,
        model=_model_name(model),
        input_tokens=int(meta.get("input_tokens", 0)),
        output_tokens=int(meta.get("output_tokens", 0)),
        latency_s=latency,
    )


def _model_name(model: BaseChatModel) -> str:
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str):
            return value
    return type(model).__name__


def _model_node(node: str, request, update, timeout_s: float | None) -> RunnableLambda:
    """A node that builds messages, calls one model (sync or async) and turns the reply into a state update.

    Model failures become `BackendError`s naming the node and model (the cause is kept, and the
    retry policy looks at it); `timeout_s` bounds each call.
    """

    def finish(state: dict[str, Any], model: BaseChatModel, reply: Any, extra: dict, started: float) -> dict[str, Any]:
        if not isinstance(reply, AIMessage):
            raise BackendError(f"{node}: model {_model_name(model)} returned {type(reply).__name__}, not a message")
        result = update(state, reply, **extra)
        result["usage"] = [_usage(node, state.get("round", 0), model, reply, time.perf_counter() - started)]
        return result

    def failure(model: BaseChatModel, exc: BaseException) -> BackendError:
        if isinstance(exc, (TimeoutError, concurrent.futures.TimeoutError)):
            return BackendError(f"{node}: model {_model_name(model)} timed out after {timeout_s}s", transient=True)
        return BackendError(
            f"{node}: model {_model_name(model)} failed: {type(exc).__name__}: {exc}", transient=_transient(exc)
        )

    def run(state: dict[str, Any]) -> dict[str, Any]:
        model, messages, extra = request(state)
        started = time.perf_counter()
        try:
            reply = _call_with_timeout(model, messages, timeout_s)
        except RapidError:
            raise
        except Exception as exc:
            raise failure(model, exc) from exc
        return finish(state, model, reply, extra, started)

    async def arun(state: dict[str, Any]) -> dict[str, Any]:
        model, messages, extra = request(state)
        started = time.perf_counter()
        try:
            reply = await asyncio.wait_for(model.ainvoke(messages), timeout_s)
        except RapidError:
            raise
        except Exception as exc:
            raise failure(model, exc) from exc
        return finish(state, model, reply, extra, started)

    return RunnableLambda(run, afunc=arun, name=node)


def _call_with_timeout(model: BaseChatModel, messages: list[BaseMessage], timeout_s: float | None) -> Any:
    if timeout_s is None:
        return model.invoke(messages)
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        context = contextvars.copy_context()  # keeps callbacks (token streaming) attached
        return executor.submit(context.run, model.invoke, messages).result(timeout=timeout_s)
    finally:
        executor.shutdown(wait=False)
