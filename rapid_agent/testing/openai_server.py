"""A real OpenAI-compatible HTTP server that answers with a LangChain chat model, with fault injection.

    reasoner = fact_reasoner({"three red circles": "3"})           # rapid_agent.testing
    with ScriptedOpenAIServer(reasoner, failure_rate=0.2) as server:
        graph = build_rapid_graph(captioner, server.spec)             # "openai:scripted@http://127.0.0.1:PORT/v1"

It speaks the chat-completions protocol of `vllm serve` / `transformers serve` (plain and streamed, with
usage), runs FastAPI on uvicorn in a background thread on a free loopback port, and answers
deterministically, fast and without weights: for tests and benchmarks of everything that sits in front
of a model endpoint (the served graph, retries, load). `failure_rate` of the calls fail, cycling through
`failure_kinds`: "error" answers HTTP 500, "hang" holds the request for `hang_s` (a client time-out).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import convert_to_messages

from rapid_agent.errors import BackendError
from rapid_agent.testing.local_servers import OpenAIEndpoint

FailureKind = Literal["error", "hang"]


class ScriptedOpenAIServer(OpenAIEndpoint):
    """Serves `model` as `model_name` at `base_url` (`/v1/chat/completions`, `/v1/models`, `/health`).

    Counters: `requests` (chat requests received), `failures` (injected failures by kind).
    """

    def __init__(
        self,
        model: BaseChatModel,
        *,
        model_name: str = "scripted",
        failure_rate: float = 0.0,
        failure_kinds: tuple[FailureKind, ...] = ("error",),
        hang_s: float = 60.0,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError(f"failure_rate must lie in [0, 1], got {failure_rate}")
        if not failure_kinds or not set(failure_kinds) <= {"error", "hang"}:
            raise ValueError(f"failure_kinds must be a non-empty tuple of 'error'/'hang', got {failure_kinds!r}")
        self.model = model
        self.model_name = model_name
        self.failure_rate = failure_rate
        self.failure_kinds = failure_kinds
        self.hang_s = hang_s
        self.requests = 0
        self.failures: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise BackendError("the scripted server is not started")
        return self._socket.getsockname()[1]

    def start(self) -> ScriptedOpenAIServer:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        config = uvicorn.Config(self._app(), log_level="warning", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name=f"openai-server:{self.model_name}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise BackendError(f"scripted OpenAI server for {self.model_name!r} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = None

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _draw_failure(self) -> FailureKind | None:
        with self._lock:
            self.requests += 1
            if self._random.random() >= self.failure_rate:
                return None
            kind = self.failure_kinds[sum(self.failures.values()) % len(self.failure_kinds)]
            self.failures[kind] += 1
            return kind

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "scripted"}]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            try:
                body = await request.json()
                model, messages = body["model"], convert_to_messages(body["messages"])
            except (ValueError, KeyError, TypeError, NotImplementedError) as exc:
                return _error(400, f"malformed chat request: {type(exc).__name__}: {exc}", "invalid_request_error")
            if model != self.model_name:
                return _error(404, f"model {model!r} is not served here (serving {self.model_name!r})", "not_found")
            failure = self._draw_failure()
            if failure == "hang":
                await asyncio.sleep(self.hang_s)
            if failure is not None:
                return _error(500, f"injected {failure} failure", "server_error")
            reply = await self.model.ainvoke(messages)
            meta = reply.usage_metadata or {}
            usage = {
                "prompt_tokens": meta.get("input_tokens", 0),
                "completion_tokens": meta.get("output_tokens", 0),
                "total_tokens": meta.get("total_tokens", 0),
            }
            completion = _Completion(self.model_name, reply.text, usage)
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return StreamingResponse(completion.events(include_usage), media_type="text/event-stream")
            return completion.response()

        return app


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


class _Completion:
    """One answer in the chat-completions wire format, whole or as server-sent events."""

    def __init__(self, model: str, text: str, usage: dict[str, int]) -> None:
        self.model, self.text, self.usage = model, text, usage
        self.id, self.created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def response(self) -> dict[str, Any]:
        choice = {"index": 0, "message": {"role": "assistant", "content": self.text}, "finish_reason": "stop"}
        return self._head("chat.completion") | {"choices": [choice], "usage": self.usage}

    async def events(self, include_usage: bool) -> AsyncIterator[str]:
        head = self._head("chat.completion.chunk")
        chunks = [
            head | {"choices": [{"index": 0, "delta": {"role": "assistant", "content": self.text}, "finish_reason": None}]},
            head | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        ]
        if include_usage:
            chunks.append(head | {"choices": [], "usage": self.usage})
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"
