"""Deterministic LangChain chat models for tests: scripted replies, latency, failures, streaming, tool calls."""


from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr, field_validator

# --------------------------------------------------------------------------------------------------
# Scripted chat models
# --------------------------------------------------------------------------------------------------


def _word_count(messages: Sequence[BaseMessage]) -> int:
    return sum(len(message.text.split()) for message in messages)


def _usage(messages: Sequence[BaseMessage], reply: str) -> UsageMetadata:
    prompt_tokens, reply_tokens = _word_count(messages), len(reply.split())
    return UsageMetadata(
        input_tokens=prompt_tokens, output_tokens=reply_tokens, total_tokens=prompt_tokens + reply_tokens
    )


class _RecordingChatModel(BaseChatModel):
    """Base of the scripted models: a thread-safe record of every call's messages."""

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _calls: list[list[BaseMessage]] = PrivateAttr(default_factory=list)

    @property
    def calls(self) -> list[list[BaseMessage]]:
        """The messages of every call so far (failed ones included), oldest first."""
        with self._lock:
            return list(self._calls)

    def _record(self, messages: list[BaseMessage]) -> int:
        """Record a call and return its 0-based index."""
        with self._lock:
            self._calls.append(list(messages))
            return len(self._calls) - 1


class ScriptedChatModel(_RecordingChatModel):
    """A deterministic chat model whose reply is ``respond(messages)``.

    Each call is recorded in :attr:`calls`, waits ``latency_s`` (``time.sleep`` when sync,
    ``asyncio.sleep`` when async, so async calls really overlap), and the first ``fail_times`` calls
    raise ``error("scripted failure")`` after that wait. Replies carry ``usage_metadata`` counting
    words (prompt words as input tokens, reply words as output tokens). Streaming yields the reply word
    by word. Safe to use from several threads and tasks at once.

    To prove concurrency without timing, set ``wait_for_in_flight=N``: every call is held until N
    calls have been in flight at once (then the gate stays open); a gate still closed after
    ``gate_timeout_s`` raises ``TimeoutError``. :attr:`max_in_flight` is the most calls seen at once.
    """

    respond: Callable[[list[BaseMessage]], str]
    latency_s: float = 0.0
    fail_times: int = 0
    error: type[Exception] = ConnectionError
    wait_for_in_flight: int = 0
    gate_timeout_s: float = 120.0
    _flight: threading.Condition = PrivateAttr(default_factory=threading.Condition)
    _in_flight: int = PrivateAttr(0)
    _max_in_flight: int = PrivateAttr(0)

    @property
    def max_in_flight(self) -> int:
        """The largest number of calls that were in progress at the same time."""
        with self._flight:
            return self._max_in_flight

    @contextlib.contextmanager
    def _in_progress(self) -> Iterator[None]:
        with self._flight:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._flight.notify_all()
        try:
            yield
        finally:
            with self._flight:
                self._in_flight -= 1

    def _gate_open(self) -> bool:
        return self._max_in_flight >= self.wait_for_in_flight

    def _gate_timeout(self) -> TimeoutError:
        return TimeoutError(
            f"only {self._max_in_flight} of the {self.wait_for_in_flight} awaited calls were ever in flight at once"
        )

    def _wait_at_gate(self) -> None:
        with self._flight:
            if not self._flight.wait_for(self._gate_open, timeout=self.gate_timeout_s):
                raise self._gate_timeout()

    async def _await_gate(self) -> None:
        deadline = time.monotonic() + self.gate_timeout_s
        while not self.max_in_flight >= self.wait_for_in_flight:
            if time.monotonic() > deadline:
                raise self._gate_timeout()
            await asyncio.sleep(0.005)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _should_fail(self, messages: list[BaseMessage]) -> bool:
        return self._record(messages) < self.fail_times

    def _reply(self, messages: list[BaseMessage], fail: bool) -> AIMessage:
        if fail:
            raise self.error("scripted failure")
        reply = self.respond(messages)
        return AIMessage(content=reply, usage_metadata=_usage(messages, reply))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self._in_progress():
            fail = self._should_fail(messages)
            self._wait_at_gate()
            time.sleep(self.latency_s)
            return ChatResult(generations=[ChatGeneration(message=self._reply(messages, fail))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self._in_progress():
            fail = self._should_fail(messages)
            await self._await_gate()
            await asyncio.sleep(self.latency_s)
            return ChatResult(generations=[ChatGeneration(message=self._reply(messages, fail))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        with self._in_progress():
            fail = self._should_fail(messages)
            self._wait_at_gate()
            time.sleep(self.latency_s)
            reply = self._reply(messages, fail)
        for chunk in _chunks(reply):
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        with self._in_progress():
            fail = self._should_fail(messages)
            await self._await_gate()
            await asyncio.sleep(self.latency_s)
            reply = self._reply(messages, fail)
        for chunk in _chunks(reply):
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


def _chunks(message: AIMessage) -> list[ChatGenerationChunk]:
    """Split a text reply into one chunk per word (whitespace kept); usage rides on the last chunk."""
    words = re.findall(r"\S+\s*|\s+", message.text) or [""]
    chunks = [ChatGenerationChunk(message=AIMessageChunk(content=word)) for word in words]
    last = chunks[-1].message
    last.usage_metadata = message.usage_metadata
    last.chunk_position = "last"
    return chunks


def fact_reasoner(
    facts: Mapping[str, str], *, fallback: str = "I cannot tell.", **kwargs: Any
) -> ScriptedChatModel:
    """A reasoner that answers ``\\boxed{answer}`` only when its prompt mentions a known fact.

    ``facts`` maps a fact (matched as a case-insensitive substring of the text of all prompt messages)
    to its answer, e.g. ``{"three red circles": "3"}``; the first matching fact wins. Without a match
    the reply is ``fallback`` (no box). Extra keyword arguments go to :class:`ScriptedChatModel`.
    """
    known = dict(facts)

    def respond(messages: list[BaseMessage]) -> str:
        prompt = " ".join(message.text for message in messages).lower()
        for fact, answer in known.items():
            if fact.lower() in prompt:
                return f"The description mentions {fact}, so the answer is \\boxed{{{answer}}}."
        return fallback

    return ScriptedChatModel(respond=respond, **kwargs)


def echo_captioner(text: str = "An image. Question: {question}", **kwargs: Any) -> ScriptedChatModel:
    """A captioner that always replies ``text``, with ``{question}`` replaced by the text of the last
    human message it received. Extra keyword arguments go to :class:`ScriptedChatModel`."""

    def respond(messages: list[BaseMessage]) -> str:
        question = next((m.text for m in reversed(messages) if isinstance(m, HumanMessage)), "")
        return text.replace("{question}", question)

    return ScriptedChatModel(respond=respond, **kwargs)


class ToolCallingScriptedModel(_RecordingChatModel):
    """A chat model that plays ``script`` (AI messages or strings) in order, one reply per call.

    It supports ``bind_tools`` (returning itself and recording the tool names in
    :attr:`bound_tool_names`), so agents such as ``langchain.agents.create_agent`` can be driven with
    replies like ``AIMessage(content="", tool_calls=[{"name": "look_and_reason", "args": {...},
    "id": "call_1"}])`` followed by a final text answer. A call past the end of the script raises
    ``IndexError``. Calls are recorded in :attr:`calls`.
    """

    script: list[AIMessage]
    _tool_names: list[str] = PrivateAttr(default_factory=list)

    @field_validator("script", mode="before")
    @classmethod
    def _strings_to_messages(cls, script: Sequence[AIMessage | str]) -> list[AIMessage]:
        return [AIMessage(content=step) if isinstance(step, str) else step for step in script]

    @property
    def _llm_type(self) -> str:
        return "scripted-tool-calling"

    @property
    def bound_tool_names(self) -> list[str]:
        """Names of the tools passed to the latest ``bind_tools`` call."""
        return list(self._tool_names)

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> ToolCallingScriptedModel:
        """Record the tools' names and return this model (the script decides which tools get called)."""
        self._tool_names = [convert_to_openai_tool(tool)["function"]["name"] for tool in tools]
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        index = self._record(messages)
        if index >= len(self.script):
            raise IndexError(f"script exhausted: call {index + 1} but only {len(self.script)} replies")
        return ChatResult(generations=[ChatGeneration(message=self.script[index].model_copy(deep=True))])
