"""`ServedChatModel`: `ChatOpenAI` for a self-hosted OpenAI-compatible server (vLLM, SGLang, `transformers serve`).

Before its first call (or when `precheck` asks, before any model call of a run) it reads the
server's `/models` once: a wrong model name or a URL without `/v1` fails with a message saying what
the server serves, and a token budget larger than the served context is fitted to it with a one-line
notice. A reasoning parser's separate thinking (`vllm serve --reasoning-parser ...`: the message's
`reasoning_content`, or `reasoning` in newer vLLM) is kept in `additional_kwargs["reasoning_content"]`,
which `ChatOpenAI` drops. While running it watches for a hung server: when calls keep timing out and
none has completed for `hang_after_timeouts` timeouts (counted from the start of the first call that
timed out), the server is declared hung and every later call fails at once (not retried) instead of
waiting out timeouts and retries for each remaining request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from contextlib import contextmanager

import openai
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI
from pydantic import Field, PrivateAttr

from rapid_agent.errors import BackendError
from rapid_agent.models.server_probe import check_model, fit_budget

log = logging.getLogger(__name__)


class ServedChatModel(ChatOpenAI):
    """A chat model behind an OpenAI-compatible server at `openai_api_base`, checked before use."""

    role: str = Field("model", description="'captioner' or 'reasoner': named in notices and errors.")
    hang_after_timeouts: int = Field(
        2, ge=1, description="Declare the server hung after this many timeouts' worth of time without a completed call."
    )

    _prepared: bool = PrivateAttr(False)
    _prepare_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _failing_since: float | None = PrivateAttr(None)  # start of the first call that timed out since the last success
    _watch_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _hung: str | None = PrivateAttr(None)

    def prepare(self, setting: str = "max_new_tokens") -> None:
        """Check the served name and fit `max_tokens` to the served context (once; later calls return at once).

        `setting` names the flag or field that sets the budget, for the notice.
        """
        with self._prepare_lock:
            if self._prepared:
                return
            served = check_model(self.openai_api_base, self.model_name, self.role)
            if self.max_tokens is not None:
                fitted = fit_budget(self.max_tokens, served.context)
                if fitted != self.max_tokens:
                    log.warning(
                        "%s: %s at %s serves a %d-token context; its budget of %d new tokens is fitted to %d "
                        "(the server trims it further to what each prompt leaves); set %s to choose another",
                        self.role, self.model_name, self.openai_api_base, served.context, self.max_tokens, fitted,
                        setting,
                    )
                    self.max_tokens = fitted
            self._prepared = True

    # ---------------------------------------------------------------- a reasoning parser's thinking

    def _create_chat_result(self, response, generation_info=None):
        result = super()._create_chat_result(response, generation_info)
        data = response if isinstance(response, dict) else response.model_dump()
        for generation, choice in zip(result.generations, data.get("choices") or [], strict=False):
            _keep_thinking(generation.message, choice.get("message"))
        return result

    def _convert_chunk_to_generation_chunk(self, chunk, default_chunk_class, base_generation_info):
        generation = super()._convert_chunk_to_generation_chunk(chunk, default_chunk_class, base_generation_info)
        choices = chunk.get("choices") or chunk.get("chunk", {}).get("choices") or []
        if generation is not None and choices:
            _keep_thinking(generation.message, choices[0].get("delta"))
        return generation

    # ---------------------------------------------------------------- calls, watched

    def _generate(self, *args, **kwargs):
        self.prepare()
        with self._watched():
            return super()._generate(*args, **kwargs)

    async def _agenerate(self, *args, **kwargs):
        if not self._prepared:
            await asyncio.to_thread(self.prepare)
        with self._watched():
            return await super()._agenerate(*args, **kwargs)

    def _stream(self, *args, **kwargs):
        self.prepare()
        with self._watched():
            yield from super()._stream(*args, **kwargs)

    async def _astream(self, *args, **kwargs):
        if not self._prepared:
            await asyncio.to_thread(self.prepare)
        with self._watched():
            async for chunk in super()._astream(*args, **kwargs):
                yield chunk

    @contextmanager
    def _watched(self):
        """Silence is counted from the start of the first call that timed out since the last completed one,
        so idle time before it (e.g. an eval's captioning pass) is never taken for a hang."""
        if self._hung is not None:
            raise BackendError(self._hung)
        started = time.monotonic()
        try:
            yield
        except openai.APITimeoutError:
            with self._watch_lock:
                self._failing_since = self._failing_since if self._failing_since is not None else started
                silent_s = time.monotonic() - self._failing_since
            limit_s = self.hang_after_timeouts * float(self.request_timeout or 0)
            if limit_s and silent_s >= limit_s:
                self._hung = (
                    f"{self.role}: the server at {self.openai_api_base} completed no call of {self.model_name} in "
                    f"{silent_s:.0f}s ({self.hang_after_timeouts} x the {self.request_timeout:g}s timeout, which "
                    "counts time queued on the server too): it looks hung. Check or restart it, then resume the run"
                )
                raise BackendError(self._hung) from None
            raise
        self._failing_since = None


def _keep_thinking(message, raw: dict | None) -> None:
    """Copy a server message's (or stream delta's) separate thinking into `additional_kwargs`."""
    thinking = next((raw[k] for k in ("reasoning_content", "reasoning") if isinstance((raw or {}).get(k), str)), None)
    if thinking:
        message.additional_kwargs["reasoning_content"] = thinking


def precheck(models: Iterable[tuple[str, BaseChatModel]], settings: Mapping[str, str] | None = None) -> None:
    """Before any model call: check every served model's name and fit its budget (see `ServedChatModel.prepare`).

    `models` are `(role, model)` pairs; `settings` maps a role to the flag that sets its budget, named
    in notices. Other chat models (local, scripted, hosted APIs) need no check and are skipped.
    """
    for role, model in models:
        if isinstance(model, ServedChatModel):
            model.prepare((settings or {}).get(role, "max_new_tokens"))
