"""Call the served RAPID graph (LangGraph server) from Python, with the server's refusals as typed errors.

    client = RapidClient("http://127.0.0.1:2024", api_key="...")
    out = client.invoke({"images": ["chart.png"], "question": "Which bar is highest?"},
                        context={"reasoner": "openai:Qwen/Qwen2.5-7B-Instruct@http://vllm:8000/v1"})
    tool = rapid_agent.as_tool(client)      # a LangChain tool backed by the remote graph

Local image files are read here and sent as base64 (the server reads no caller paths unless they lie
under its RAPID_IMAGE_ROOT); http(s) and data: URLs pass unchanged. A refusal (HTTP 422 before the
run) or a failed run raises the matching `rapid_agent.errors` class (`InputError`, `ImageInputError`,
`ConfigError`, `BackendError`) with the server's message; anything else raises `ServiceError`.
"""

from __future__ import annotations

import base64
import json
import mimetypes
from pathlib import Path
from typing import Any

import httpx
from langgraph_sdk import get_client, get_sync_client

from rapid_agent import errors
from rapid_agent.errors import RapidError
from rapid_agent.state import RapidContext

_TYPED = {cls.__name__: cls for cls in (errors.InputError, errors.ImageInputError, errors.ConfigError, errors.BackendError)}


class ServiceError(RapidError):
    """The server refused a request (auth, unknown graph...) or a run failed with an untyped error."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RapidClient:
    """Stateless runs of one served graph (`graph`, default "rapid"), sync or async."""

    def __init__(
        self, url: str, *, api_key: str | None = None, graph: str = "rapid", encode_local_files: bool = True
    ) -> None:
        self.url, self.graph, self.encode_local_files = url, graph, encode_local_files
        self._async = get_client(url=url, api_key=api_key)
        self._sync = get_sync_client(url=url, api_key=api_key)

    def invoke(self, input: dict[str, Any], context: RapidContext | dict | None = None) -> dict[str, Any]:
        """Run the graph once and return its output (see `rapid_agent.RapidOutput`)."""
        try:
            result = self._sync.runs.wait(None, self.graph, **self._payload(input, context), raise_error=False)
        except httpx.HTTPStatusError as exc:
            raise error_from_http(exc) from None
        return run_output(result)

    async def ainvoke(self, input: dict[str, Any], context: RapidContext | dict | None = None) -> dict[str, Any]:
        """Async `invoke`."""
        try:
            result = await self._async.runs.wait(None, self.graph, **self._payload(input, context), raise_error=False)
        except httpx.HTTPStatusError as exc:
            raise error_from_http(exc) from None
        return run_output(result)

    def _payload(self, input: dict[str, Any], context: RapidContext | dict | None) -> dict[str, Any]:
        if isinstance(context, RapidContext):
            context = context.model_dump(exclude_none=True)
        images = input.get("images")
        if self.encode_local_files and isinstance(images, list):
            input = input | {"images": [encode_image(image) for image in images]}
        return {"input": input, "context": context}


def encode_image(image: Any) -> Any:
    """A local image file as a base64 `data:` URL; anything else (URLs, data URLs, base64) unchanged."""
    if isinstance(image, Path) or (
        isinstance(image, str) and not image.startswith(("data:", "http://", "https://")) and len(image) < 4096
    ):
        path = Path(image).expanduser()
        if path.is_file():
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return str(image) if isinstance(image, Path) else image


def raise_for_run_error(error: Any) -> None:
    """Raise the typed error a failed run reported (`{"error": type name, "message": ...}`)."""
    name = error.get("error") if isinstance(error, dict) else None
    message = error.get("message", "") if isinstance(error, dict) else str(error)
    if name in _TYPED:
        raise _TYPED[name](message)
    raise ServiceError(f"run failed: {name or 'error'}: {message}")


def run_output(result: Any) -> dict[str, Any]:
    """A run's output; a failed run raises its typed error."""
    if isinstance(result, dict) and "__error__" in result:
        raise_for_run_error(result["__error__"])
    if not isinstance(result, dict):
        raise ServiceError(f"unexpected run result: {result!r:.200}")
    return result


def error_from_http(exc: httpx.HTTPStatusError) -> RapidError:
    """The typed error for a refused request; the detail travels in the body (the SDK adds it as a note)."""
    status = exc.response.status_code
    body = "".join(getattr(exc, "__notes__", []))
    try:
        detail = json.loads(body).get("detail", body)
    except (ValueError, AttributeError):
        detail = body
    name, _, message = str(detail).partition(": ")
    if status == 422 and name in _TYPED:
        return _TYPED[name](message)
    return ServiceError(f"HTTP {status} from {exc.request.url}: {detail}", status=status)
