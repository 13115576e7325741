"""Local providers: spec providers whose models are files on this machine, by registry.

`LOCAL_PROVIDERS` maps a provider name to the function giving the file or folder of `PROVIDER:NAME`
for a role (None: not on this machine, e.g. a Hub id). `build_model` loads every such spec with the
local `hf` backends; registering a provider here is all a new one needs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rapid_agent.miniworld import model_path
from rapid_agent.models.tiny import ensure_tiny_models

if TYPE_CHECKING:
    from rapid_agent.models.spec import Role


def adapter_base(path: str | Path) -> str | None:
    """The base model named by a PEFT adapter folder, or None when `path` is not an adapter."""
    config = Path(path) / "adapter_config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text())["base_model_name_or_path"]


def _hf(name: str, role: Role) -> Path | None:
    """`hf:NAME`: the checkpoint folder (or GGUF file) NAME when it exists; None for a Hub id."""
    path = Path(name).expanduser()
    return path if path.exists() else None


def _tiny(name: str, role: Role) -> Path:
    """`tiny`: the tiny random model of the role (`rapid_agent.models.tiny`), built on first use."""
    captioner, reasoner = ensure_tiny_models()
    return captioner if role == "captioner" else reasoner


def _miniworld(name: str, role: Role) -> Path:
    """`miniworld:NAME`: a shipped miniature-world model (`rapid_agent.miniworld.MODELS`)."""
    return model_path(name)


LOCAL_PROVIDERS: dict[str, Callable[[str, Role], Path | None]] = {
    "hf": _hf,
    "tiny": _tiny,
    "miniworld": _miniworld,
}
