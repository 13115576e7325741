"""The model calls of one graph node: made together (sync or async), bounded, with typed failures.

A node hands `invoke_all` / `ainvoke_all` its `ModelCall`s (one per captioner of a captioner list, or
one call of k samples for k reasoner samples) and gets one `Reply` per sample, in order, with its
latency. The calls run concurrently: async calls as tasks on the running loop (k samples of one prompt
as one batched `agenerate` call: one callback set-up for all, one batch for a local model's
micro-batcher), sync ones on worker threads (a single sync call without a time-out runs in place). A
failed call becomes a `BackendError` naming the node and the model, `transient` when worth retrying
(the graph's retry policy reads it, then reruns the node's calls); `timeout_s` bounds each call; the
first failure cancels the async calls still running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import time
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import ensure_config

from rapid_agent.errors import BackendError, RapidError
from rapid_agent.state import NodeUsage


@dataclass(frozen=True)
class ModelCall:
    """One call: a model, the messages it is sent, and how many samples it asks for."""

    model: BaseChatModel
    messages: list[BaseMessage]
    samples: int = 1


@dataclass(frozen=True)
class Reply:
    """A call's reply and how long the call took."""

    call: ModelCall
    message: AIMessage
    latency_s: float

    def usage(self, node: str, round_: int) -> NodeUsage:
        """The call's usage record (tokens as the backend reported them)."""
        meta = self.message.usage_metadata or {}
        return NodeUsage(
            node=node, round=round_, model=model_name(self.call.model), input_tokens=int(meta.get("input_tokens", 0)),
            output_tokens=int(meta.get("output_tokens", 0)), latency_s=self.latency_s,
        )


def transient(exc: BaseException) -> bool:
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


def model_name(model: BaseChatModel) -> str:
    """The name a model reports (`model_name`, `model` or `model_id`), else its class name."""
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str):
            return value
    return type(model).__name__


def invoke_all(node: str, calls: Sequence[ModelCall], timeout_s: float | None) -> list[Reply]:
    """Make `calls` at once (worker threads, one per sample) and return their replies in order."""
    calls = [ModelCall(call.model, call.messages) for call in calls for _ in range(call.samples)]
    if len(calls) == 1 and timeout_s is None:
        return [_sync_call(node, calls[0])]
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=len(calls))
    try:
        # each call keeps the caller's context (callbacks: token streaming)
        futures = [executor.submit(contextvars.copy_context().run, _sync_call, node, call) for call in calls]
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        replies = []
        for call, future in zip(calls, futures, strict=True):
            try:
                replies.append(future.result(timeout=None if deadline is None else max(0.0, deadline - time.monotonic())))
            except concurrent.futures.TimeoutError as exc:
                raise _failure(node, call.model, exc, timeout_s) from exc
        return replies
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


async def ainvoke_all(node: str, calls: Sequence[ModelCall], timeout_s: float | None) -> list[Reply]:
    """Make `calls` at once (tasks on the running loop) and return their replies in order."""
    if len(calls) == 1:
        return await _async_call(node, calls[0], timeout_s)
    tasks = [asyncio.ensure_future(_async_call(node, call, timeout_s)) for call in calls]
    try:
        return [reply for replies in await asyncio.gather(*tasks) for reply in replies]
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


def _sync_call(node: str, call: ModelCall) -> Reply:
    started = time.perf_counter()
    try:
        message = call.model.invoke(call.messages)
    except RapidError:
        raise
    except Exception as exc:
        raise _failure(node, call.model, exc, None) from exc
    return _reply(node, call, message, time.perf_counter() - started)


async def _async_call(node: str, call: ModelCall, timeout_s: float | None) -> list[Reply]:
    started = time.perf_counter()
    try:
        if call.samples == 1:
            messages = [await asyncio.wait_for(call.model.ainvoke(call.messages), timeout_s)]
        else:
            messages = await asyncio.wait_for(_samples(call), timeout_s)
    except RapidError:
        raise
    except Exception as exc:
        raise _failure(node, call.model, exc, timeout_s) from exc
    latency = time.perf_counter() - started
    return [_reply(node, call, message, latency) for message in messages]


async def _samples(call: ModelCall) -> list[object]:
    """`call.samples` replies to one prompt from one `agenerate` call, as `ainvoke` makes one."""
    config = ensure_config()  # the node's: callbacks (token streaming, tracing), tags, metadata
    result = await call.model.agenerate(
        [call.messages] * call.samples, callbacks=config.get("callbacks"), tags=config.get("tags"),
        metadata=config.get("metadata"), run_name=config.get("run_name"),
    )
    return [generations[0].message for generations in result.generations]


def _reply(node: str, call: ModelCall, message: object, latency_s: float) -> Reply:
    if not isinstance(message, AIMessage):
        raise BackendError(f"{node}: model {model_name(call.model)} returned {type(message).__name__}, not a message")
    return Reply(call=call, message=message, latency_s=latency_s)


def _failure(node: str, model: BaseChatModel, exc: BaseException, timeout_s: float | None) -> BackendError:
    if isinstance(exc, (TimeoutError, concurrent.futures.TimeoutError)):
        return BackendError(f"{node}: model {model_name(model)} timed out after {timeout_s}s", transient=True)
    return BackendError(f"{node}: model {model_name(model)} failed: {type(exc).__name__}: {exc}", transient=transient(exc))
