"""Perception caching: one key for a captioner output, and the caches the graph keeps it in.

`perception_key` is the key of every perception cache, the graph's node cache and the eval harness's
caption cache (`evals.cache`) alike. It hashes everything that decides the captioner's output: which
output (caption, re-caption or tentative answer), the captioner's identity
(`rapid_agent.models.identity`: for local weights a fingerprint of their files, so a retrained
captioner is another captioner; a served model's name and URL), the preset's key and the prompt
texts of that output, the images' content, the question with its options, the decoding settings,
and for a re-caption the captions and requests before it.

In the graph, caching is opt-in (`build_rapid_graph(caption_cache=...)`) and uses LangGraph's own
node cache: a `CachePolicy` on the `caption` and `tentative` nodes (`perception_cache_policy`) and
the compiled graph's `cache` (`open_caption_cache`: in memory, a SQLite file, or any LangGraph
`BaseCache`). Node cache keys are read from the state, since LangGraph computes them before the node
runs and without the run's context: `prepare` writes the keys of this run's captioner and preset
(`perception_keys`, under `PERCEPTION_KEYS`), and a node that runs checks them against its own
captioner and preset before its output is stored (`check_perception_keys`). A node output replayed
from the cache reads `perception_cached=True` (`MarkCachedHits`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langgraph.cache.base import BaseCache, FullKey, Namespace
from langgraph.cache.memory import InMemoryCache
from langgraph.cache.sqlite import SqliteCache
from langgraph.types import CachePolicy

from rapid_agent.errors import ConfigError, InputError
from rapid_agent.models.identity import chat_model_identity
from rapid_agent.prompts import PromptPreset, format_question

PerceptionKind = Literal["caption", "recaption", "tentative"]
PERCEPTION_KINDS: tuple[PerceptionKind, ...] = ("caption", "recaption", "tentative")
PERCEPTION_KEYS = "perception_keys"
"""State channel: this run's key per perception kind (written by `prepare`, read by the node caches)."""
CACHED_FLAG = "perception_cached"
"""State field: True when every captioner output of the run came from the cache, False when one was
computed, None when the run made none."""
MEMORY = ":memory:"
"""The `caption_cache` setting of an in-memory cache (lost when the process ends)."""


def perception_key(
    kind: PerceptionKind,
    captioner: str,
    preset: PromptPreset,
    image_hashes: Sequence[str],
    question: str,
    options: Sequence[str] | None,
    decoding: Mapping[str, Any],
) -> str:
    """The cache key of one captioner output (see the module docstring); `captioner` is an identity
    from `rapid_agent.models.identity`, `image_hashes` the images' `image_digest`s."""
    prompts = {
        "caption": [preset.caption_system, preset.caption_user],
        "recaption": [preset.caption_system, preset.recaption_user],
        "tentative": [preset.tentative_system],
    }[kind]
    payload = {
        "kind": kind,
        "captioner": captioner,
        "preset": preset.key,
        "prompts": prompts,
        "images": list(image_hashes),
        "question": format_question(question, list(options) if options is not None else None),
        "decoding": dict(decoding),
    }
    return _digest(payload)


def image_digest(data: bytes) -> str:
    """SHA-256 of an image's bytes."""
    return hashlib.sha256(data).hexdigest()


def decoding_of(model: BaseChatModel) -> dict[str, Any]:
    """The decoding settings of a chat model object that decide its output, as `perception_key` reads them."""
    budget = next((getattr(model, a) for a in ("max_new_tokens", "max_tokens") if getattr(model, a, None)), None)
    decoding = {"temperature": getattr(model, "temperature", None), "top_p": getattr(model, "top_p", None),
                "max_new_tokens": budget}
    if getattr(model, "seed", None) is not None:
        decoding["seed"] = model.seed
    return decoding


def perception_keys(
    captioners: BaseChatModel | Sequence[BaseChatModel], preset: PromptPreset, image_urls: Sequence[str], question: str,
    options: Sequence[str] | None,
) -> dict[str, str]:
    """This run's key per perception kind, for the graph's `data:` image URLs (keyed by the bytes sent).

    A captioner list (each describes the image) keys its captions by every captioner in order; the
    tentative answer is the first captioner's."""
    models = [captioners] if isinstance(captioners, BaseChatModel) else list(captioners)
    hashes = [image_digest(base64.b64decode(url.partition(",")[2])) for url in image_urls]
    each = [
        {kind: perception_key(kind, chat_model_identity(m), preset, hashes, question, options, decoding_of(m))
         for kind in PERCEPTION_KINDS}
        for m in models
    ]
    if len(each) == 1:
        return each[0]
    return {kind: each[0][kind] if kind == "tentative" else _digest([keys[kind] for keys in each]) for kind in PERCEPTION_KINDS}


def check_perception_keys(
    state: Mapping[str, Any], captioners: BaseChatModel | Sequence[BaseChatModel], preset: PromptPreset,
) -> None:
    """Refuse to run (and so to cache) a perception node whose state keys are not this run's own."""
    expected = perception_keys(captioners, preset, state.get("image_urls") or [], state["question"], state.get("options"))
    if state.get(PERCEPTION_KEYS) != expected:
        raise InputError(
            f"state field {PERCEPTION_KEYS} does not match this run's captioner, preset and input; it is derived "
            "by the graph and cannot be set from outside"
        )


def perception_cache_policy(kind: Literal["caption", "tentative"], ttl_s: int | None = None) -> CachePolicy:
    """LangGraph's `CachePolicy` of a perception node, keyed by the state's `PERCEPTION_KEYS`.

    A `caption` node with captions already in its state is a re-caption round: its key adds the
    captions and requests so far (the node's output is the whole caption list).
    """

    def key(state: Mapping[str, Any]) -> str:
        keys = state.get(PERCEPTION_KEYS) or {}
        captions = state.get("captions") or []
        which = "recaption" if kind == "caption" and captions else kind
        if which not in keys:
            raise InputError(f"state field {PERCEPTION_KEYS} has no {which!r} key; it is written by `prepare`")
        if which == "recaption":
            return _digest([keys[which], captions, state.get("recaption_requests") or []])
        return keys[which]

    return CachePolicy(key_func=key, ttl=ttl_s)


class MarkCachedHits(BaseCache):
    """A LangGraph cache whose replayed node outputs say so: their `perception_cached` write reads True.

    Everything else is the wrapped cache's (`inner`): storage, TTLs, serialisation.
    """

    def __init__(self, inner: BaseCache) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner

    def get(self, keys: Sequence[FullKey]) -> dict[FullKey, Any]:
        return {key: _mark(writes) for key, writes in self.inner.get(keys).items()}

    async def aget(self, keys: Sequence[FullKey]) -> dict[FullKey, Any]:
        return {key: _mark(writes) for key, writes in (await self.inner.aget(keys)).items()}

    def set(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> None:
        self.inner.set(pairs)

    async def aset(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> None:
        await self.inner.aset(pairs)

    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        self.inner.clear(namespaces)

    async def aclear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        await self.inner.aclear(namespaces)


def open_caption_cache(cache: BaseCache | str | Path | None) -> MarkCachedHits | None:
    """The graph's perception cache for a setting: None (off), `MEMORY` (in memory), a SQLite file
    path (made with its folder when missing; shared by every graph and process that opens it), or a
    LangGraph `BaseCache` (e.g. `RedisCache`). A path that cannot hold the cache is a `ConfigError`."""
    if cache is None or isinstance(cache, MarkCachedHits):
        return cache
    if isinstance(cache, BaseCache):
        return MarkCachedHits(cache)
    if not isinstance(cache, (str, Path)) or not str(cache).strip():
        raise ConfigError(f"caption_cache must be None, {MEMORY!r}, a file path or a LangGraph BaseCache, got {cache!r:.100}")
    if str(cache) == MEMORY:
        return MarkCachedHits(InMemoryCache())
    path = Path(cache).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        store = SqliteCache(path=str(path))
        store.get([(("probe",), "probe")])  # a database whose `cache` table is another application's fails here
    except Exception as exc:  # sqlite3.Error, OSError
        raise ConfigError(f"caption cache {str(path)!r} cannot be used: {type(exc).__name__}: {exc}") from None
    return MarkCachedHits(store)


def _mark(writes: Any) -> list[tuple[str, Any]]:
    return [(channel, True if channel == CACHED_FLAG else value) for channel, value in writes]


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
