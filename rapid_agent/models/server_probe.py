"""What an OpenAI-compatible server serves, asked before any model call.

`probe(base_url)` reads `GET {base_url}/models` once: the served model names and, where the server
reports it, each model's context length (vLLM and SGLang: `max_model_len`). `check_model` turns a
wrong name, a missing `/v1` or a dead server into a `BackendError` that says what to change;
`fit_budget` fits a token budget to the served context.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from pydantic import BaseModel, ConfigDict

from rapid_agent.errors import BackendError, ConfigError

PROBE_TIMEOUT_S = 10.0
CONTEXT_KEYS = ("max_model_len", "context_length", "max_context_length")
"""Where servers report a model's context in `/models` (vLLM and SGLang use the first)."""


class ServedModel(BaseModel):
    """One entry of a server's `/models` list."""

    model_config = ConfigDict(frozen=True)

    name: str
    context: int | None = None


class Endpoint(BaseModel):
    """A server's answer to `GET {base_url}/models`."""

    model_config = ConfigDict(frozen=True)

    base_url: str
    models: tuple[ServedModel, ...]
    on_demand: bool = False  # an unpinned `transformers serve` loads any model it is asked for

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def find(self, name: str) -> ServedModel | None:
        """The entry serving `name`, or None (a load-on-demand server answers for any name)."""
        for model in self.models:
            if model.name == name:
                return model
        return ServedModel(name=name) if self.on_demand else None


def probe(base_url: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> Endpoint:
    """Read `GET {base_url}/models`; a dead server, a missing `/v1` or a non-OpenAI answer is a `BackendError`."""
    url = base_url.rstrip("/") + "/models"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise BackendError(f"the server at {base_url} answered {exc.code} to GET {url}{_v1_hint(base_url)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BackendError(
            f"the server at {base_url} is unreachable ({reason}); start it or fix the URL", transient=True
        ) from None
    try:
        entries = json.loads(body)["data"]
        models = tuple(_served(entry) for entry in entries)
    except (ValueError, KeyError, TypeError):
        raise BackendError(
            f"the server at {base_url} did not answer GET {url} with an OpenAI model list{_v1_hint(base_url)}"
        ) from None
    # `transformers serve` marks its entries with a load `status`; pinned to one model it lists that one alone
    on_demand = len(entries) != 1 and any(isinstance(e.get("status"), dict) for e in entries)
    return Endpoint(base_url=base_url, models=models, on_demand=on_demand)


def check_model(base_url: str, name: str, role: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> ServedModel:
    """The served model `name` at `base_url`, or a `BackendError` listing what the server serves instead."""
    try:
        endpoint = probe(base_url, timeout_s=timeout_s)
    except BackendError as exc:
        raise BackendError(f"{role}: {exc}", transient=exc.transient) from None
    found = endpoint.find(name)
    if found is None:
        raise BackendError(
            f"{role}: the server at {base_url} serves {endpoint.names}; you asked for {name!r} "
            f"(use openai:{endpoint.names[0] if endpoint.names else 'NAME'}@{base_url}, or start the server "
            "with --served-model-name)"
        )
    return found


def fit_budget(budget: int, context: int | None) -> int:
    """The largest budget a server with `context` tokens accepts: `min(budget, context)`.

    vLLM accepts any budget up to its `max_model_len` and trims it to the context left after each
    prompt, so a fitted budget never fails on length; `None` (context not reported) keeps `budget`.
    """
    if budget < 1:
        raise ConfigError(f"a token budget must be at least 1, got {budget}")
    return budget if context is None else min(budget, context)


def _served(entry: dict) -> ServedModel:
    context = next((entry[k] for k in CONTEXT_KEYS if isinstance(entry.get(k), int)), None)
    return ServedModel(name=str(entry["id"]), context=context)


def _v1_hint(base_url: str) -> str:
    path = urllib.parse.urlparse(base_url).path.rstrip("/")
    if not path.endswith("/v1"):
        return f"; OpenAI-compatible servers answer under /v1: did you mean {base_url.rstrip('/')}/v1?"
    return "; is it an OpenAI-compatible server (vllm serve, SGLang, transformers serve)?"
