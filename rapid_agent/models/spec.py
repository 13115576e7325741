"""One model-spec resolver for every entry point (library, CLIs, the served graph).

Spec strings:
    hf:Qwen/Qwen2.5-VL-7B-Instruct      local Hugging Face model by Hub id
    hf:/path/to/checkpoint               local folder: full weights or a PEFT adapter (detected)
    hf:/path/to/model.gguf               a GGUF file (loaded de-quantised; needs the `gguf` package)
    openai:MODEL@http://host:port/v1     an OpenAI-compatible server (vLLM, SGLang, transformers serve)
    openai:MODEL                         OpenAI itself (OPENAI_API_KEY)
    tiny                                 the tiny random models (rapid_agent.models.tiny, built on first use)
    miniworld:NAME                       a shipped miniature-world model (rapid_agent.miniworld.MODELS)
    PROVIDER:MODEL                       anything `langchain.chat_models.init_chat_model` knows

`ModelSpec.parse` reads a spec string; the providers of local files (`hf`, `tiny`, `miniworld`) are
registered in `rapid_agent.models.local.LOCAL_PROVIDERS` and all load with the local `hf` backends.

The role ("captioner" or "reasoner") picks the local backend class (vision or text) for `hf:` and
the default token budget (`DEFAULT_MAX_NEW_TOKENS`). An `openai:MODEL@URL` model checks the served
name and fits its budget to the served context before its first call (`rapid_agent.models.served`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Literal

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ConfigDict, Field

from rapid_agent.errors import ConfigError
from rapid_agent.models.local import LOCAL_PROVIDERS

Role = Literal["captioner", "reasoner"]
ROLES: tuple[Role, ...] = ("captioner", "reasoner")


DEFAULT_MAX_NEW_TOKENS: dict[Role, int] = {"captioner": 1024, "reasoner": 8192}
"""Token budget per role when none is set: captions rarely pass 1k tokens; 8192 is the paper's
reasoner budget. A served model's budget is fitted to its context (`rapid_agent.models.served`)."""
TINY_MAX_NEW_TOKENS = 64
"""Budget of the random `tiny` models when none is set: they never stop on their own."""


class GenerationSettings(BaseModel):
    """Decoding settings applied to models built from spec strings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int | None = Field(
        None, gt=0, description="Token budget per call; None: the role's default (DEFAULT_MAX_NEW_TOKENS)."
    )
    timeout_s: float = Field(
        600.0, gt=0,
        description="Per-request timeout for remote endpoints; it counts the time a request waits in the server's queue.",
    )
    max_batch_size: int = Field(8, gt=0, description="Micro-batch size for local hf: models.")
    max_wait_s: float = Field(0.01, ge=0, description="How long a local micro-batch waits for more requests.")

    def budget(self, role: Role, *, tiny: bool = False) -> int:
        """`max_new_tokens`, or the role's default (`TINY_MAX_NEW_TOKENS` for the `tiny` models)."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        return TINY_MAX_NEW_TOKENS if tiny else DEFAULT_MAX_NEW_TOKENS[role]


class ModelSpec(BaseModel):
    """A parsed spec string (see the module docstring); `str(spec)` is its canonical form."""

    model_config = ConfigDict(frozen=True)

    provider: str
    model: str
    base_url: str | None = Field(None, description="The server of an `openai:MODEL@URL` spec.")

    @classmethod
    def parse(cls, spec: str) -> ModelSpec:
        """The spec `spec` names; `ConfigError` when it is malformed."""
        spec = spec.strip()
        if spec == "tiny":
            return cls(provider="tiny", model="tiny")
        provider, sep, rest = spec.partition(":")
        if not sep or not provider or not rest.strip():
            raise ConfigError(
                f"malformed model spec {spec!r}: expected 'hf:NAME_OR_PATH', 'openai:MODEL@URL', "
                "'PROVIDER:MODEL' or 'tiny'"
            )
        base_url = None
        if provider == "openai" and "@" in rest:
            rest, _, base_url = rest.rpartition("@")
            if not base_url.startswith(("http://", "https://")) or not rest:
                raise ConfigError(f"malformed model spec {spec!r}: expected openai:MODEL@http(s)://host:port/v1")
        return cls(provider=provider, model=rest, base_url=base_url)

    def __str__(self) -> str:
        if (self.provider, self.model) == ("tiny", "tiny"):
            return "tiny"
        return f"{self.provider}:{self.model}" + (f"@{self.base_url}" if self.base_url else "")

    def local_path(self, role: Role) -> Path | None:
        """The file or folder of a local model (`hf:PATH`, `tiny`, `miniworld:NAME`; see `LOCAL_PROVIDERS`);
        None for Hub ids and served or hosted models."""
        folder = LOCAL_PROVIDERS.get(self.provider)
        return folder(self.model, role) if folder else None


class ModelResolver:
    """Turns specs into chat models, caching each (spec, role) so local weights load once.

    `generation` gives per-role decoding settings for models built from specs; chat model
    objects pass through unchanged.
    """

    def __init__(self, generation: dict[Role, GenerationSettings] | None = None) -> None:
        self.generation = {role: GenerationSettings() for role in ROLES} | dict(generation or {})
        self._cache: dict[tuple[ModelSpec, Role], BaseChatModel] = {}
        self._lock = threading.Lock()

    def resolve(self, model: BaseChatModel | str, role: Role) -> BaseChatModel:
        """A chat model for `model` (returned as is when it already is one)."""
        if isinstance(model, BaseChatModel):
            return model
        if not isinstance(model, str):
            raise ConfigError(f"{role}: expected a chat model or a spec string, got {type(model).__name__}")
        key = (ModelSpec.parse(model), role)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = build_model(key[0], role, self.generation[role])
            return self._cache[key]


def build_model(spec: ModelSpec, role: Role, generation: GenerationSettings) -> BaseChatModel:
    """Build a fresh chat model from a spec (prefer `ModelResolver.resolve`, which caches)."""
    if spec.provider in LOCAL_PROVIDERS:
        return _local_model(str(spec.local_path(role) or spec.model), role, generation, tiny=spec.provider == "tiny")
    if spec.provider == "openai":
        return _openai_model(spec.model, spec.base_url, role, generation)
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        raise ConfigError(f"spec {str(spec)!r} needs the 'langchain' package (pip install langchain)") from None
    try:
        return init_chat_model(
            spec.model, model_provider=spec.provider, temperature=generation.temperature,
            max_tokens=generation.budget(role),
        )
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"cannot build model from spec {str(spec)!r}: {exc}") from None


def _local_model(name: str, role: Role, generation: GenerationSettings, *, tiny: bool) -> BaseChatModel:
    """A local `hf` backend on `name` (a Hub id or a local path): vision for the captioner, text for the reasoner."""
    from rapid_agent.models.hf import HFTextChatModel, HFVisionChatModel

    cls = HFVisionChatModel if role == "captioner" else HFTextChatModel
    return cls(
        model_path=name,
        max_new_tokens=generation.budget(role, tiny=tiny),
        temperature=generation.temperature,
        top_p=generation.top_p,
        max_batch_size=generation.max_batch_size,
        max_wait_s=generation.max_wait_s,
    )


def _openai_model(name: str, base_url: str | None, role: Role, generation: GenerationSettings) -> BaseChatModel:
    """`ChatOpenAI` for OpenAI itself; a `ServedChatModel` (name check, fitted budget, hang watch) for `@URL`."""
    try:
        from langchain_openai import ChatOpenAI
        from openai import DefaultAsyncHttpxClient

        from rapid_agent.models.served import ServedChatModel
    except ImportError:
        raise ConfigError("openai: specs need langchain-openai (pip install 'rapid-agent[openai]')") from None
    api_key = os.environ.get("OPENAI_API_KEY") or ("EMPTY" if base_url else None)
    if api_key is None:
        raise ConfigError("openai:MODEL without @URL calls OpenAI itself and needs OPENAI_API_KEY")
    cls, extra = (ServedChatModel, {"role": role}) if base_url else (ChatOpenAI, {})
    return cls(
        model=name,
        base_url=base_url,
        api_key=api_key,
        temperature=generation.temperature,
        top_p=generation.top_p,
        max_tokens=generation.budget(role),
        timeout=generation.timeout_s,
        max_retries=0,  # the graph's RetryPolicy owns retries
        stream_usage=True,
        # Its own connection pool: langchain-openai otherwise shares one async client per URL across the
        # process, and connections opened on an event loop that has since closed fail on the next loop.
        http_async_client=DefaultAsyncHttpxClient(),
        **extra,
    )
