"""`build_rapid_graph`: the RAPID perception → reasoning graph.

    START → prepare ─┬→ caption ───┬→ reason ─→ END
                     ├→ tentative ─┘    │
                     └──────────────→ reason
                 (reason → caption when the reasoner asks for a re-caption)

`prepare` validates the request and loads images once; `caption` (the MLLM describes, conditioned
on the question) and `tentative` (the MLLM answers directly, for presets that use it) run
concurrently; `reason` (the text-only reasoner) answers from the caption(s). A state that already
carries `captions` skips `caption`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import time
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import get_runtime
from langgraph.types import RetryPolicy
from typing_extensions import NotRequired

from rapid_agent.answers import extract_answer, strip_think
from rapid_agent.errors import BackendError, ConfigError, InputError, RapidError
from rapid_agent.images import ImagePolicy, load_images, to_data_url
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

MAX_QUESTION_CHARS = 20_000


class _GraphState(RapidState):
    image_urls: NotRequired[list[str]]


@dataclass(frozen=True)
class _Settings:
    captioner: BaseChatModel | None
    reasoner: BaseChatModel | None
    preset: PromptPreset
    max_recaption_rounds: int


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

    Per call, `context=RapidContext(...)` overrides captioner, reasoner, preset and loop rounds.
    """
    if max_recaption_rounds < 0:
        raise ConfigError(f"max_recaption_rounds must be >= 0, got {max_recaption_rounds}")
    defaults = RapidContext(
        captioner=captioner, reasoner=reasoner, prompt_preset=get_preset(prompt_preset),
        max_recaption_rounds=max_recaption_rounds,
    )
    policy = image_policy or ImagePolicy()
    resolver = resolver or ModelResolver()

    def settings() -> _Settings:
        context = get_runtime(RapidContext).context or RapidContext()
        captioner_ = _pick(context.captioner, defaults.captioner)
        reasoner_ = _pick(context.reasoner, defaults.reasoner)
        rounds = _pick(context.max_recaption_rounds, defaults.max_recaption_rounds)
        return _Settings(
            captioner=resolver.resolve(captioner_, "captioner") if captioner_ is not None else None,
            reasoner=resolver.resolve(reasoner_, "reasoner") if reasoner_ is not None else None,
            preset=get_preset(_pick(context.prompt_preset, defaults.prompt_preset)),
            max_recaption_rounds=rounds,
        )

    def prepare(state: _GraphState) -> dict[str, Any]:
        _validate_request(state)
        s = settings()
        needs_images = not state.get("captions") or (
            s.preset.uses_tentative and not state.get("tentative_answer")
        )
        if needs_images and s.captioner is None:
            raise ConfigError("no captioner: pass captions in the input or configure a captioner")
        # given captions skip `caption`, but a re-caption round still needs the images
        needs_images = needs_images or (s.max_recaption_rounds > 0 and s.captioner is not None)
        update: dict[str, Any] = {"round": state.get("round", 0)}
        if needs_images:
            update["image_urls"] = [to_data_url(img) for img in load_images(state.get("images") or [], policy)]
        return update

    def route_start(state: _GraphState) -> list[Literal["caption", "tentative", "reason"]]:
        preset = settings().preset
        targets: list[Literal["caption", "tentative", "reason"]] = []
        if not state.get("captions"):
            targets.append("caption")
        if preset.uses_tentative and not state.get("tentative_answer"):
            targets.append("tentative")
        return targets or ["reason"]

    def caption_request(state: _GraphState) -> tuple[BaseChatModel, list[BaseMessage], dict[str, Any]]:
        s = settings()
        question = format_question(state["question"], state.get("options"))
        if _recaption_pending(state):
            text = s.preset.recaption_user.format(question=question, request=state["recaption_requests"][-1])
        else:
            text = s.preset.caption_user.format(question=question)
        return s.captioner, _vision_messages(s.preset.caption_system, state, text), {}

    def caption_update(state: _GraphState, reply: AIMessage) -> dict[str, Any]:
        return {"captions": [*(state.get("captions") or []), _text(reply)]}

    def tentative_request(state: _GraphState) -> tuple[BaseChatModel, list[BaseMessage], dict[str, Any]]:
        s = settings()
        text = format_question(state["question"], state.get("options"))
        return s.captioner, _vision_messages(s.preset.tentative_system, state, text), {}

    def tentative_update(state: _GraphState, reply: AIMessage) -> dict[str, Any]:
        return {"tentative_answer": _text(reply)}

    def reason_request(state: _GraphState) -> tuple[BaseChatModel, list[BaseMessage], dict[str, Any]]:
        s = settings()
        if s.reasoner is None:
            raise ConfigError("no reasoner: pass one to build_rapid_graph or in RapidContext(reasoner=...)")
        captions = state["captions"]
        user = s.preset.reasoner_user.format(
            caption=join_captions(captions, state.get("recaption_requests") or []),
            question=format_question(state["question"], state.get("options")),
            tentative=state.get("tentative_answer") or "",
        )
        may_ask = state.get("round", 0) < s.max_recaption_rounds
        if may_ask:
            user += RECAPTION_INSTRUCTION
        messages = [SystemMessage(s.preset.reasoner_system), HumanMessage(user)]
        return s.reasoner, messages, {"may_ask": may_ask}

    def reason_update(state: _GraphState, reply: AIMessage, may_ask: bool) -> dict[str, Any]:
        output = _text(reply)
        request = parse_recaption_request(strip_think(output)) if may_ask else None
        if request is not None:
            return {
                "reasoning": output,
                "answer": None,
                "recaption_requests": [*(state.get("recaption_requests") or []), request],
                "round": state.get("round", 0) + 1,
            }
        return {"reasoning": output, "answer": extract_answer(output, state.get("options"))}

    def route_after_reason(state: _GraphState) -> Literal["caption", "__end__"]:
        return "caption" if _recaption_pending(state) else END

    builder = StateGraph(_GraphState, context_schema=RapidContext, input_schema=RapidInput, output_schema=RapidOutput)
    builder.add_node("prepare", prepare)
    builder.add_node("caption", _model_node("caption", caption_request, caption_update, call_timeout_s), retry_policy=retry_policy)
    builder.add_node("tentative", _model_node("tentative", tentative_request, tentative_update, call_timeout_s), retry_policy=retry_policy)
    builder.add_node("reason", _model_node("reason", reason_request, reason_update, call_timeout_s), retry_policy=retry_policy)
    builder.add_edge(START, "prepare")
    builder.add_conditional_edges("prepare", route_start, ["caption", "tentative", "reason"])
    builder.add_edge("caption", "reason")
    builder.add_edge("tentative", "reason")
    builder.add_conditional_edges("reason", route_after_reason, ["caption", END])
    return builder.compile(name=name)


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _recaption_pending(state: dict[str, Any]) -> bool:
    """Every re-caption adds one caption, so a request is unanswered while requests >= captions."""
    captions = state.get("captions") or []
    return bool(captions) and len(state.get("recaption_requests") or []) >= len(captions)


def _validate_request(state: dict[str, Any]) -> None:
    question = state.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InputError("question must be a non-empty string")
    if len(question) > MAX_QUESTION_CHARS:
        raise InputError(f"question has {len(question)} characters; the limit is {MAX_QUESTION_CHARS}")
    options = state.get("options")
    if options is not None and (
        not isinstance(options, (list, tuple)) or not all(isinstance(o, str) and o.strip() for o in options)
    ):
        raise InputError(f"options must be a list of non-empty strings, got {options!r:.200}")
    captions = state.get("captions")
    if captions is not None and (
        not isinstance(captions, (list, tuple)) or not all(isinstance(c, str) for c in captions)
    ):
        raise InputError("captions must be a list of strings")


def _vision_messages(system: str, state: dict[str, Any], text: str) -> list[BaseMessage]:
    parts: list[str | dict] = [{"type": "image_url", "image_url": {"url": url}} for url in state.get("image_urls") or []]
    parts.append({"type": "text", "text": text})
    return [SystemMessage(system), HumanMessage(parts)]


def _text(reply: BaseMessage) -> str:
    return reply.text


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
