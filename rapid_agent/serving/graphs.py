"""The deployable RAPID graphs (see `langgraph.json`), configured from `RAPID_*` environment variables.

    rapid              caption -> reason (RAPID_MAX_RECAPTION_ROUNDS, default 0)
    rapid_recaption    the same with the re-caption loop on (RAPID_RECAPTION_GRAPH_ROUNDS, default 2)

Both share one resolver (local models load once), accept images only under a strict policy, and let
a run's `context` override captioner, reasoner, preset and rounds within the allowlist. The variables
are listed in `graphs/settings.py`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from langgraph.graph.state import CompiledStateGraph

from graphs.guard import AllowlistResolver
from graphs.settings import ENV_NAMES, ServeSettings
from rapid_agent import build_rapid_graph
from rapid_agent.models.served import precheck
from rapid_agent.models.spec import ModelResolver


def graph_from_env(
    env: Mapping[str, str] = os.environ,
    *,
    recaption_rounds: int | None = None,
    resolver: ModelResolver | None = None,
    name: str = "rapid",
) -> CompiledStateGraph:
    """Build the served RAPID graph from `RAPID_*` settings in `env`."""
    settings = ServeSettings.from_env(env)
    return build_rapid_graph(
        captioner=settings.captioner,
        reasoner=settings.reasoner,
        prompt_preset=settings.prompt_preset,
        max_recaption_rounds=settings.max_recaption_rounds if recaption_rounds is None else recaption_rounds,
        image_policy=settings.image_policy(),
        resolver=resolver or AllowlistResolver(settings),
        call_timeout_s=settings.call_timeout_s,
        max_text_chars=settings.max_text_chars,
        name=name,
    )


_settings = ServeSettings.from_env()
_resolver = AllowlistResolver(_settings)
# a served captioner or reasoner with a wrong name, URL or budget fails the server's start-up, not its first run
precheck(
    [(role, _resolver.resolve(spec, role)) for role, spec in (("captioner", _settings.captioner), ("reasoner", _settings.reasoner))],
    {"captioner": ENV_NAMES["caption_max_new_tokens"], "reasoner": ENV_NAMES["reason_max_new_tokens"]},
)
graph = graph_from_env(resolver=_resolver)
graph_recaption = graph_from_env(
    recaption_rounds=_settings.recaption_graph_rounds, resolver=_resolver, name="rapid_recaption"
)
