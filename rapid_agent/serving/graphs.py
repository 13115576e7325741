"""The served RAPID graphs of one set of `ServeSettings`, built on first use.

    rapid              caption -> reason (RAPID_MAX_RECAPTION_ROUNDS, default 0)
    rapid_recaption    the same with the re-caption loop on (RAPID_RECAPTION_GRAPH_ROUNDS, default 2)
    look_and_reason    the agent tool over `rapid` (`rapid_agent.serving.tools`)
    describe_image     the perception-only tool over `rapid`

All share one resolver (local models load once) and, with `RAPID_CAPTION_CACHE`, one caption
cache, accept images only under the settings' strict policy, and let a run's `context` override
captioner, reasoner, preset and rounds within the allowlist (a captioner list of allowed specs included) and reasoner samples up to their limit. Nothing is built when this module is
imported: `ServedGraphs(settings).graph(name)` builds what is asked, once.
"""

from __future__ import annotations

import sys
import threading
from typing import Literal, TextIO

from langgraph.cache.base import BaseCache
from langgraph.graph.state import CompiledStateGraph

from rapid_agent.graph import build_rapid_graph
from rapid_agent.models.served import precheck
from rapid_agent.models.spec import ModelResolver
from rapid_agent.serving.guard import AllowlistResolver
from rapid_agent.serving.settings import ENV_NAMES, ServeSettings
from rapid_agent.serving.tools import TOOL_NAMES, build_tool_graph

GraphName = Literal["rapid", "rapid_recaption", "look_and_reason", "describe_image"]
GRAPH_NAMES: tuple[GraphName, ...] = ("rapid", "rapid_recaption", *TOOL_NAMES)


def graph_from_settings(
    settings: ServeSettings,
    *,
    recaption_rounds: int | None = None,
    resolver: ModelResolver | None = None,
    caption_cache: BaseCache | None = None,
    name: str = "rapid",
) -> CompiledStateGraph:
    """The served RAPID graph of `settings` (its own re-caption rounds unless `recaption_rounds` is given;
    its own caption cache, opened here, unless `caption_cache` is given)."""
    return build_rapid_graph(
        captioner=settings.captioner,
        reasoner=settings.reasoner,
        prompt_preset=settings.prompt_preset,
        max_recaption_rounds=settings.max_recaption_rounds if recaption_rounds is None else recaption_rounds,
        reasoner_samples=settings.reasoner_samples,
        image_policy=settings.image_policy(),
        resolver=resolver or AllowlistResolver(settings),
        call_timeout_s=settings.call_timeout_s,
        max_text_chars=settings.text_limit(),
        caption_cache=caption_cache if caption_cache is not None else settings.open_caption_cache(),
        caption_cache_ttl_s=settings.caption_cache_ttl_s,
        name=name,
    )


class ServedGraphs:
    """The graphs a server (or an MCP process) serves from one `ServeSettings`, each built once, on first use."""

    def __init__(self, settings: ServeSettings, *, log: TextIO | None = None) -> None:
        self.settings = settings
        self.resolver = AllowlistResolver(settings)
        self.caption_cache = settings.open_caption_cache()
        self._log = log
        self._graphs: dict[str, CompiledStateGraph] = {}
        self._lock = threading.Lock()

    def check_models(self) -> None:
        """Say which models are served (a notice when they are the shipped defaults) and check served ones:
        a wrong name, URL or budget fails here (at start-up), not at the first run."""
        if notice := self.settings.default_models_notice():
            print(notice, file=self._log or sys.stderr, flush=True)
        precheck(
            [(role, self.resolver.resolve(spec, role))
             for role, spec in (("captioner", self.settings.captioner), ("reasoner", self.settings.reasoner))],
            {"captioner": ENV_NAMES["caption_max_new_tokens"], "reasoner": ENV_NAMES["reason_max_new_tokens"]},
        )

    def graph(self, name: GraphName) -> CompiledStateGraph:
        """The compiled graph `name` (one of `GRAPH_NAMES`)."""
        with self._lock:
            return self._graph(name)

    def _graph(self, name: GraphName) -> CompiledStateGraph:
        if name not in self._graphs:
            if name == "rapid":
                built = graph_from_settings(self.settings, resolver=self.resolver, caption_cache=self.caption_cache)
            elif name == "rapid_recaption":
                built = graph_from_settings(
                    self.settings, recaption_rounds=self.settings.recaption_graph_rounds, resolver=self.resolver,
                    caption_cache=self.caption_cache, name=name,
                )
            elif name in TOOL_NAMES:
                built = build_tool_graph(self._graph("rapid"), name)
            else:
                raise KeyError(f"unknown served graph {name!r}; the graphs are {list(GRAPH_NAMES)}")
            self._graphs[name] = built
        return self._graphs[name]
