"""The identity of a model's weights: what caption caches and eval result keys record for a spec.

Local folders (full checkpoints or PEFT adapters, with their base) are identified by a fingerprint of
their files, so a model retrained in place under the same spec is another model; Hub ids by the cached
snapshot's commit when known; served models by their name (not the URL: the same model may move
between ports); any other spec by itself.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from rapid_agent.models.hf import adapter_base
from rapid_agent.models.local import LOCAL_PROVIDERS
from rapid_agent.models.spec import ModelSpec

_SMALL_FILE = 1 << 20


def model_identity(spec: str | ModelSpec) -> str:
    """The identity of the weights behind `spec` (see the module docstring); `ConfigError` when malformed."""
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec)
    if spec.provider == "openai":
        path = Path(spec.model).expanduser()
        return f"openai:{_fingerprint(path) if path.is_dir() else spec.model}"
    if spec.provider not in LOCAL_PROVIDERS:
        return str(spec)
    path = spec.local_path("captioner")
    if path is None or not path.is_dir():  # a Hub id (or a single file, such as a GGUF)
        return f"hf:{spec.model}@{_hub_revision(spec.model)}"
    base = adapter_base(path)
    base_id = f"+base={model_identity(ModelSpec(provider='hf', model=base))}" if base else ""
    # `tiny` keeps its own prefix and every other local folder reads `hf:`, as caches written before hold them
    return f"{'tiny' if spec.provider == 'tiny' else 'hf'}:{_fingerprint(path)}{base_id}"


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
