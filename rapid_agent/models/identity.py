"""The identity of a model's weights: what caption caches and eval result keys record for a model.

The one identity scheme of every cache (the graph's node cache, the eval harness's caption cache,
training's caption data) and of eval result keys:

* local folders (full checkpoints or PEFT adapters, with their base): a fingerprint of their files, so
  a model retrained in place under the same spec is another model;
* Hub ids: the cached snapshot's commit when known;
* served models (`openai:MODEL@URL`): the model name and the server's URL (two servers may serve
  different weights under one name; a server moved to another port is a cache miss, never a stale hit);
* any other spec: itself.

`model_identity` reads a spec; `chat_model_identity` a chat model object (the spec it came from is
not known there): a local `hf` backend by the fingerprint of its folder, taken once per object, when
first asked (so it names the weights that object loaded, even when the folder is retrained later), a
served model by its name and URL, and any other model as LangChain's own LLM cache tells models
apart (its class and parameters).
"""

from __future__ import annotations

import hashlib
import io
import threading
import weakref
from pathlib import Path

from langchain_core.language_models import BaseChatModel

from rapid_agent.models.local import LOCAL_PROVIDERS, adapter_base
from rapid_agent.models.spec import ModelSpec

_SMALL_FILE = 1 << 20


def model_identity(spec: str | ModelSpec) -> str:
    """The identity of the weights behind `spec` (see the module docstring); `ConfigError` when malformed."""
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec)
    if spec.provider == "openai":
        path = Path(spec.model).expanduser()
        name = _fingerprint(path) if path.is_dir() else spec.model
        return f"openai:{name}" + (f"@{spec.base_url.rstrip('/')}" if spec.base_url else "")
    if spec.provider not in LOCAL_PROVIDERS:
        return str(spec)
    path = spec.local_path("captioner")
    if path is None or not path.is_dir():  # a Hub id (or a single file, such as a GGUF)
        return f"hf:{spec.model}@{_hub_revision(spec.model)}"
    base = adapter_base(path)
    base_id = f"+base={model_identity(ModelSpec(provider='hf', model=base))}" if base else ""
    # `tiny` keeps its own prefix and every other local folder reads `hf:`, as caches written before hold them
    return f"{'tiny' if spec.provider == 'tiny' else 'hf'}:{_fingerprint(path)}{base_id}"


def chat_model_identity(model: BaseChatModel | str) -> str:
    """The identity of a chat model object or spec (see the module docstring), memoised per object."""
    if isinstance(model, str):
        return model_identity(model)
    with _MEMO_LOCK:
        memo = _MEMO.get(id(model))
        if memo is not None and memo[0]() is model:
            return memo[1]
    identity, key = _object_identity(model), id(model)
    with _MEMO_LOCK:
        _MEMO[key] = (weakref.ref(model, lambda _: _MEMO.pop(key, None)), identity)
    return identity


_MEMO: dict[int, tuple[weakref.ref, str]] = {}
_MEMO_LOCK = threading.Lock()


def _object_identity(model: BaseChatModel) -> str:
    path = getattr(model, "model_path", None)  # the local `hf` backends (rapid_agent.models.hf)
    if isinstance(path, str):
        return model_identity(ModelSpec(provider="hf", model=path))
    name = getattr(model, "model_name", None)
    if isinstance(name, str) and hasattr(model, "openai_api_base"):  # ChatOpenAI and the served models
        return model_identity(ModelSpec(provider="openai", model=name, base_url=model.openai_api_base))
    kind = type(model)
    return f"{kind.__module__}.{kind.__qualname__}:{model._get_llm_string()}"


def _fingerprint(folder: Path) -> str:
    """Hash of a model folder: small files whole, large (weight) files by size, head and tail."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(folder)}:{size}".encode())
        with file.open("rb") as handle:
            if size <= _SMALL_FILE:
                digest.update(handle.read())
            else:
                digest.update(handle.read(_SMALL_FILE))
                handle.seek(-_SMALL_FILE, io.SEEK_END)
                digest.update(handle.read())
    return digest.hexdigest()[:16]


def _hub_revision(repo_id: str) -> str:
    """The commit of the locally cached snapshot of a Hub model, or 'unknown' when none is cached."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True)).name
    except Exception:  # not cached, or not a Hub id
        return "unknown"
