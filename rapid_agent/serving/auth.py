"""Authentication and authorization of the served graphs: `build_auth(settings)` is LangGraph's `auth` hook.

* Every request needs an API key from `RAPID_API_KEYS` in the `x-api-key` header
  (`langgraph_sdk.get_client(url=..., api_key=...)` sends it); otherwise 401. Studio's
  `x-auth-scheme: langsmith` bypass is closed by `"disable_studio_auth": true` in `langgraph.json`.
* Default deny (403): callers may read the graphs' assistants and use their own threads and runs;
  creating assistants, crons or store items is refused. Threads are owned by the key that made them.
* Every new run's input and context pass `rapid_agent.serving.guard.check_run_request` before the run
  is queued (a tool run is checked as the RAPID run it makes); a refusal is HTTP 422 whose detail names
  the error type, the field and the limit.
* Nothing else writes graph state: a run's `command`, a run from a `checkpoint`/`checkpoint_id` (422),
  and thread state updates (`POST /threads/{id}/state`, `supersteps`; 403) are refused. The graph
  re-checks what it sends to a model anyway (see `rapid_agent.graph`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from functools import cache
from typing import Any, NoReturn
from uuid import UUID, uuid5

from langgraph_sdk import Auth

from rapid_agent.errors import ConfigError, RapidError
from rapid_agent.serving.guard import check_run_request, tool_run_request
from rapid_agent.serving.settings import ENV_NAMES, ServeSettings
from rapid_agent.serving.tools import TOOL_NAMES


def build_auth(settings: ServeSettings) -> Auth:
    """The server's auth hook: API keys from `settings`, default deny, every new run through the guard."""
    if not settings.api_keys:
        raise ConfigError(f"{ENV_NAMES['api_keys']} is empty: set one or more comma-separated API keys to serve")
    keys = [key.get_secret_value().encode() for key in settings.api_keys]
    auth = Auth()

    @auth.authenticate
    async def authenticate(headers: dict[bytes, bytes]) -> Auth.types.MinimalUserDict:
        key = headers.get(b"x-api-key")
        if not key:
            raise Auth.exceptions.HTTPException(401, detail="missing API key: send it in the x-api-key header")
        if not any(hmac.compare_digest(key, known) for known in keys):
            raise Auth.exceptions.HTTPException(401, detail="invalid API key")
        return {"identity": "key-" + hashlib.sha256(key).hexdigest()[:16]}

    @auth.on
    async def deny_by_default(ctx: Auth.types.AuthContext, value: dict) -> NoReturn:
        raise Auth.exceptions.HTTPException(
            403, detail=f"{ctx.resource}.{ctx.action} is not allowed here: this server runs the RAPID graphs only"
        )

    @auth.on.assistants.read
    @auth.on.assistants.search
    async def read_assistants(ctx: Auth.types.AuthContext, value: dict) -> None:
        return None

    @auth.on.threads
    async def own_threads(ctx: Auth.types.AuthContext, value: dict) -> dict[str, str]:
        return _owned(ctx, value)

    @auth.on.threads.update
    async def update_thread(ctx: Auth.types.AuthContext, value: dict) -> dict[str, str]:
        """Metadata updates and run cancellation pass; writing graph state (`POST /threads/{id}/state`,
        with or without `as_node`, or `supersteps` when creating a thread) is refused."""
        if "metadata" not in value and "action" not in value:
            raise Auth.exceptions.HTTPException(
                403, detail="thread state updates are not accepted here: the graph's state is written only by its runs"
            )
        return _owned(ctx, value)

    @auth.on.threads.create_run
    async def check_run(ctx: Auth.types.AuthContext, value: Auth.types.RunsCreate) -> dict[str, str]:
        kwargs = value.get("kwargs") or {}
        if kwargs.get("webhook"):
            raise Auth.exceptions.HTTPException(422, detail="webhooks are not accepted here: poll or stream the run instead")
        if kwargs.get("command") is not None:
            raise Auth.exceptions.HTTPException(
                422, detail="commands (update, goto, resume) are not accepted here: start a new run with an input"
            )
        configurable = (kwargs.get("config") or {}).get("configurable") or {}
        if resumed := sorted(key for key in configurable if key.startswith("checkpoint")):
            raise Auth.exceptions.HTTPException(
                422, detail=f"runs from a checkpoint ({', '.join(resumed)}) are not accepted here: start a new run with an input"
            )
        try:
            # Image checks decode (and may resolve a URL's host): keep them off the event loop.
            input_, context = rapid_run_request(value.get("assistant_id"), kwargs.get("input"), kwargs.get("context"))
            await asyncio.to_thread(check_run_request, input_, context, settings)
        except RapidError as exc:
            raise Auth.exceptions.HTTPException(422, detail=f"{type(exc).__name__}: {exc}") from None
        return _owned(ctx, value)

    return auth


def _owned(ctx: Auth.types.AuthContext, value: dict) -> dict[str, str]:
    """Stamp new resources with the caller as owner, and filter what it sees to what it owns."""
    owner = {"owner": ctx.user.identity}
    if "metadata" in value:
        if value["metadata"] is None:
            value["metadata"] = {}
        value["metadata"].update(owner)  # in place: the server keeps a reference to this dict
    return owner


@cache
def _tool_of_assistant() -> dict[UUID, str]:
    """The server runs a graph through its system assistant, whose id is derived from the graph id."""
    from langgraph_api.graph import NAMESPACE_GRAPH  # the server's module: imported in the server only

    return {uuid5(NAMESPACE_GRAPH, name): name for name in TOOL_NAMES}


def rapid_run_request(assistant_id: UUID | str | None, input_: Any, context: Any) -> tuple[Any, Any]:
    """The (input, context) the RAPID graph will see for a run of `assistant_id`.

    A tool run's arguments are mapped onto them (`tool_run_request`); other runs pass unchanged.
    """
    try:
        tool = _tool_of_assistant().get(UUID(str(assistant_id)))
    except ValueError:
        tool = None
    return (input_, context) if tool is None else tool_run_request(tool, input_, context)
