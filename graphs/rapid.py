"""The deployable RAPID graph, configured from environment variables (see `langgraph.json`).

    RAPID_CAPTIONER             captioner spec (default "tiny": the offline test models)
    RAPID_REASONER              reasoner spec (default "tiny")
    RAPID_PROMPT_PRESET         prompt preset name (default "paper-train")
    RAPID_MAX_RECAPTION_ROUNDS  re-caption rounds the reasoner may ask for (default 0)
    RAPID_IMAGE_ROOT            local image paths are accepted only under this folder (unset: none)
    RAPID_ALLOW_IMAGE_URLS      "1" to let the graph fetch public http(s) image URLs (default off)
    RAPID_MAX_NEW_TOKENS        decoding budget per model call (default 1024)

Each run may override captioner, reasoner, preset and rounds through its `context`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from langgraph.graph.state import CompiledStateGraph

from rapid_agent import GenerationSettings, ImagePolicy, ModelResolver, build_rapid_graph
from rapid_agent.errors import ConfigError


def graph_from_env(env: Mapping[str, str] = os.environ, *, recaption_rounds: int | None = None) -> CompiledStateGraph:
    """Build the RAPID graph from `RAPID_*` settings in `env`."""
    try:
        rounds = int(env.get("RAPID_MAX_RECAPTION_ROUNDS", "0")) if recaption_rounds is None else recaption_rounds
        max_new_tokens = int(env.get("RAPID_MAX_NEW_TOKENS", "1024"))
    except ValueError as exc:
        raise ConfigError(f"RAPID_MAX_RECAPTION_ROUNDS / RAPID_MAX_NEW_TOKENS must be integers: {exc}") from None
    root = env.get("RAPID_IMAGE_ROOT")
    policy = ImagePolicy(
        allowed_root=Path(root) if root else None,
        allow_local_paths=bool(root),
        allow_urls=env.get("RAPID_ALLOW_IMAGE_URLS", "0") == "1",
    )
    generation = GenerationSettings(max_new_tokens=max_new_tokens)
    return build_rapid_graph(
        captioner=env.get("RAPID_CAPTIONER", "tiny"),
        reasoner=env.get("RAPID_REASONER", "tiny"),
        prompt_preset=env.get("RAPID_PROMPT_PRESET", "paper-train"),
        max_recaption_rounds=rounds,
        image_policy=policy,
        resolver=ModelResolver({"captioner": generation, "reasoner": generation}),
    )


graph = graph_from_env()
