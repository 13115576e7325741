"""Local Hugging Face chat models (vision captioner, text reasoner) on a shared micro-batcher.

Both are LangChain `BaseChatModel`s. Concurrent calls (threads, `graph.batch`, `abatch`) are
gathered by `MicroBatcher` into one left-padded `generate` call. Streaming calls (`stream`,
`astream`, LangGraph's `stream_mode="messages"`) share those batches: a `transformers` streamer
per streaming row hands its text to the caller as the batch generates. A folder holding a PEFT
adapter (`adapter_config.json`) loads its base model and merges the adapter; a `.gguf` file loads
de-quantised (needs the `gguf` package).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr
from transformers import TextStreamer
from transformers.generation.streamers import BaseStreamer

from rapid_agent.errors import BackendError, ConfigError
from rapid_agent.images import from_data_url
from rapid_agent.models.batching import MicroBatcher
from rapid_agent.models.local import adapter_base

ROLE_OF = {"system": "system", "human": "user", "ai": "assistant"}
_DONE = object()  # ends a streaming call's queue of text pieces

Sink = Callable[[str], None]
"""Receives a streaming request's text, piece by piece, on the batcher's thread."""


class _HFChatModel(BaseChatModel):
    """Shared machinery: lazy loading, message conversion, batched generation, usage metadata."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_path: str = Field(description="Hub id or local folder (full checkpoint or PEFT adapter).")
    max_new_tokens: int = Field(512, gt=0)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_batch_size: int = Field(8, gt=0)
    max_wait_s: float = Field(0.01, ge=0)
    device: str | None = Field(None, description="torch device; default cuda when available, else cpu")
    dtype: str = Field("auto", description="'auto' (bf16 on GPU, fp32 on CPU) or a torch dtype name")

    _model: Any = PrivateAttr(None)
    _processor: Any = PrivateAttr(None)
    _batcher: MicroBatcher | None = PrivateAttr(None)
    _load_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _generate_calls: int = PrivateAttr(0)

    @property
    def generate_calls(self) -> int:
        """How many batched `generate` calls ran (each serves one micro-batch)."""
        return self._generate_calls

    @property
    def model_name(self) -> str:
        return self.model_path

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "max_new_tokens": self.max_new_tokens, "temperature": self.temperature}

    def load(self) -> _HFChatModel:
        """Load weights and processor now (otherwise the first call loads them)."""
        with self._load_lock:
            if self._model is None:
                device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
                dtype = self._torch_dtype(device)
                base = adapter_base(self.model_path)
                try:
                    model = self._load_model(base or self.model_path, dtype).to(device)
                    if base is not None:
                        model = _merge_adapter(model, self.model_path)
                    processor_path = self.model_path if _has_processor(self.model_path) else (base or self.model_path)
                    self._processor = self._load_processor(processor_path)
                except (OSError, ValueError, ImportError) as exc:
                    raise ConfigError(f"cannot load model {self.model_path!r}: {exc}") from None
                self._model = model.eval()
                self._batcher = MicroBatcher(
                    self._generate_batch, max_batch_size=self.max_batch_size, max_wait_s=self.max_wait_s,
                    name=f"hf-batcher:{self.model_path}",
                )
        return self

    def _torch_dtype(self, device: str) -> torch.dtype:
        if self.dtype == "auto":
            return torch.bfloat16 if device.startswith("cuda") else torch.float32
        return getattr(torch, self.dtype)

    def _settings(self, kwargs: dict[str, Any]) -> tuple[int, float, float]:
        return (
            int(kwargs.get("max_new_tokens", kwargs.get("max_tokens", self.max_new_tokens))),
            float(kwargs.get("temperature", self.temperature)),
            float(kwargs.get("top_p", self.top_p)),
        )

    def _submit(self, messages: list[BaseMessage], kwargs: dict[str, Any], sink: Sink | None = None):
        self.load()
        settings = self._settings(kwargs)
        # streaming and plain calls with the same settings share a batch: `sink` is per row
        return self._batcher.submit((self._conversation(messages), settings, sink), group=settings)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return _chat_result(self._submit(messages, kwargs).result())

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        if self._model is None:
            await asyncio.to_thread(self.load)  # loading reads files: keep it off the event loop
        return _chat_result(await asyncio.wrap_future(self._submit(messages, kwargs)))

    def _stream(self, messages, stop=None, run_manager=None, **kwargs) -> Iterator[ChatGenerationChunk]:
        pieces: queue.SimpleQueue = queue.SimpleQueue()
        future = self._submit(messages, kwargs, sink=pieces.put)
        future.add_done_callback(lambda _: pieces.put(_DONE))
        streamed = []
        while (piece := pieces.get()) is not _DONE:
            streamed.append(piece)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        chunk = _last_chunk(future.result(), "".join(streamed))
        if run_manager is not None:
            run_manager.on_llm_new_token(chunk.text, chunk=chunk)
        yield chunk

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs) -> AsyncIterator[ChatGenerationChunk]:
        if self._model is None:
            await asyncio.to_thread(self.load)
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, item)

        future = self._submit(messages, kwargs, sink=put)
        future.add_done_callback(lambda _: put(_DONE))
        streamed = []
        while (piece := await pieces.get()) is not _DONE:
            streamed.append(piece)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        chunk = _last_chunk(await asyncio.wrap_future(future), "".join(streamed))
        if run_manager is not None:
            await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
        yield chunk

    def _conversation(self, messages: list[BaseMessage]) -> list[dict[str, Any]]:
        return [{"role": ROLE_OF.get(m.type, m.type), "content": self._content(m.content)} for m in messages]

    def _generate_batch(
        self, items: list[tuple[list[dict], tuple[int, float, float], Sink | None]]
    ) -> list[tuple[str, int, int, str]]:
        """One padded `generate` over gathered requests; returns (text, input_tokens, output_tokens, finish_reason)."""
        max_new_tokens, temperature, top_p = items[0][1]
        inputs = self._encode([conversation for conversation, _, _ in items]).to(self._model.device)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}
        tokenizer = getattr(self._processor, "tokenizer", self._processor)
        stops = _stop_ids(self._model.generation_config.eos_token_id, tokenizer.pad_token_id)
        sinks = [sink for _, _, sink in items]
        streamer = _BatchStreamer(tokenizer, sinks, stops) if any(sinks) else None
        try:
            with torch.inference_mode():
                output = self._model.generate(**inputs, max_new_tokens=max_new_tokens, streamer=streamer, **sampling)
        finally:
            if streamer is not None:
                streamer.end()
        self._generate_calls += 1
        prompt_len = inputs["input_ids"].shape[1]
        results = []
        for row, mask in zip(output[:, prompt_len:], inputs["attention_mask"], strict=False):
            generated = row.tolist()
            ids = _until_eos(generated, stops)
            finish = "stop" if len(ids) < len(generated) or len(ids) < max_new_tokens else "length"
            results.append((tokenizer.decode(ids, skip_special_tokens=True), int(mask.sum()), len(ids), finish))
        return results

    @property
    def _llm_type(self) -> str:
        return "huggingface-local"

    # role-specific parts
    @abstractmethod
    def _load_model(self, path: str, dtype: torch.dtype) -> Any: ...

    @abstractmethod
    def _load_processor(self, path: str) -> Any: ...

    @abstractmethod
    def _content(self, content: Any) -> Any: ...

    def _encode(self, conversations: list[list[dict]]) -> Any:
        """Left-padded input ids for a batch of conversations."""
        return self._processor.apply_chat_template(
            conversations, add_generation_prompt=True, tokenize=True, return_dict=True,
            return_tensors="pt", padding=True, padding_side="left",
        )


class HFVisionChatModel(_HFChatModel):
    """A local image-text-to-text model (e.g. Qwen2.5-VL) as a chat model: the captioner backend."""

    def _load_model(self, path, dtype):
        from transformers import AutoModelForImageTextToText

        location, extra = _pretrained(path)
        return AutoModelForImageTextToText.from_pretrained(location, dtype=dtype, **extra)

    def _load_processor(self, path):
        from transformers import AutoProcessor

        location, extra = _pretrained(path)
        return AutoProcessor.from_pretrained(location, **extra)

    def _content(self, content: Any) -> list[dict[str, Any]]:
        if isinstance(content, str):
            return [{"type": "text", "text": content}]
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append({"type": "text", "text": part})
            elif part.get("type") == "text":
                parts.append({"type": "text", "text": part["text"]})
            elif part.get("type") == "image_url":
                url = part["image_url"]["url"] if isinstance(part["image_url"], dict) else part["image_url"]
                parts.append({"type": "image", "image": from_data_url(url)})
            else:
                raise BackendError(f"unsupported content part type {part.get('type')!r} for {self.model_path}")
        return parts


    def _encode(self, conversations):
        """Left-padded input ids and pixel values for a batch of conversations with images."""
        return self._processor.apply_chat_template(
            conversations, add_generation_prompt=True, tokenize=True, return_dict=True,
            return_tensors="pt", processor_kwargs={"padding": True, "padding_side": "left"},
        )


class HFTextChatModel(_HFChatModel):
    """A local causal LM as a chat model: the text-only reasoner backend."""

    def _load_model(self, path, dtype):
        from transformers import AutoModelForCausalLM

        location, extra = _pretrained(path)
        return AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **extra)

    def _load_processor(self, path):
        from transformers import AutoTokenizer

        location, extra = _pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(location, **extra)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def _content(self, content: Any) -> str:
        if isinstance(content, str):
            return content
        texts = [p if isinstance(p, str) else p.get("text", "") for p in content]
        if any(isinstance(p, dict) and p.get("type") not in (None, "text") for p in content):
            raise BackendError(f"{self.model_path} is a text-only model; it cannot take image content")
        return "".join(texts)


def _pretrained(path: str) -> tuple[str, dict[str, str]]:
    """`from_pretrained` arguments: a GGUF file loads (de-quantised) from its folder with `gguf_file`."""
    if path.endswith(".gguf"):
        return str(Path(path).parent), {"gguf_file": Path(path).name}
    return path, {}


def _has_processor(path: str) -> bool:
    folder = Path(path)
    return folder.is_dir() and any((folder / f).is_file() for f in ("tokenizer_config.json", "processor_config.json"))


def _merge_adapter(model, adapter_path: str):
    try:
        from peft import PeftModel
    except ImportError:
        raise ConfigError(f"{adapter_path} is a PEFT adapter; install peft (pip install 'rapid-agent[train]')") from None
    return PeftModel.from_pretrained(model, adapter_path).merge_and_unload()


def _stop_ids(eos: int | list[int] | None, pad: int | None) -> set[int | None]:
    return set(eos if isinstance(eos, list) else [eos]) | {pad}


def _until_eos(ids: list[int], stops: set[int | None]) -> list[int]:
    for i, token in enumerate(ids):
        if token in stops:
            return ids[:i]
    return ids


class _RowStreamer(TextStreamer):
    """transformers' incremental detokenizer for one row, handing finished text to a sink."""

    def __init__(self, tokenizer: Any, sink: Sink) -> None:
        super().__init__(tokenizer, skip_prompt=False, skip_special_tokens=True)
        self.sink = sink

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.sink(text)


class _BatchStreamer(BaseStreamer):
    """Routes each generated token of a batch to its row's streamer (rows without a sink are skipped).

    `generate` first puts the prompt ids (skipped here), then one token per row per step; a row
    ends at its first stop token (eos or pad), as `_until_eos` cuts the final text.
    """

    def __init__(self, tokenizer: Any, sinks: list[Sink | None], stops: set[int | None]) -> None:
        self.rows = [_RowStreamer(tokenizer, sink) if sink is not None else None for sink in sinks]
        self.stops = stops
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for i, row in enumerate(self.rows):
            if row is None:
                continue
            if int(value[i]) in self.stops:
                row.end()
                self.rows[i] = None
            else:
                row.put(value[i : i + 1])

    def end(self) -> None:
        for row in self.rows:
            if row is not None:
                row.end()
        self.rows = [None] * len(self.rows)


def _message_parts(result: tuple[str, int, int, str]) -> tuple[str, dict[str, int], dict[str, str]]:
    text, input_tokens, output_tokens, finish = result
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}
    return text, usage, {"finish_reason": finish}


def _chat_result(result: tuple[str, int, int, str]) -> ChatResult:
    text, usage, metadata = _message_parts(result)
    message = AIMessage(content=text, usage_metadata=usage, response_metadata=metadata)
    return ChatResult(generations=[ChatGeneration(message=message)])


def _last_chunk(result: tuple[str, int, int, str], streamed: str) -> ChatGenerationChunk:
    """What the streamer held back (the final text less what was streamed), with usage and finish reason."""
    text, usage, metadata = _message_parts(result)
    rest = text[len(streamed):] if text.startswith(streamed) else ""
    return ChatGenerationChunk(message=AIMessageChunk(content=rest, usage_metadata=usage, response_metadata=metadata))
