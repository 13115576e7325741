"""Checks on what remote callers send, made before a run is queued, and the model-spec allowlist.

`check_run_request` refuses a bad run request with a typed error naming the field and the limit
(`InputError` for the input, `ConfigError` for the context); the auth hook turns it into HTTP 422 and
the MCP servers into an error result. The input's fields are checked by the library's own
`validate_request` (the graph runs the same function); this module adds only what a server needs:
a JSON object with known fields, image sources as strings checked against the served image policy,
the context's allowlist (each spec of a captioner list) and limits (re-caption rounds, reasoner samples), and the tool calls mapped onto the RAPID run they make.
`AllowlistResolver` enforces the allowlist again inside the graph, whatever path a context took.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

from rapid_agent.errors import ConfigError, InputError
from rapid_agent.images import check_images
from rapid_agent.models.spec import ModelResolver, Role
from rapid_agent.prompts import PRESETS
from rapid_agent.serving.settings import ENV_NAMES, ServeSettings
from rapid_agent.serving.tools import to_rapid_request
from rapid_agent.state import RapidContext, RapidInput
from rapid_agent.validation import kind, validate_request

INPUT_FIELDS = frozenset(RapidInput.__annotations__)
CONTEXT_FIELDS = frozenset(RapidContext.model_fields)


def check_run_request(input_: Any, context: Any, settings: ServeSettings) -> None:
    """Refuse a run whose input or context the served graph must not run (raises before any model)."""
    check_context(context, settings)
    check_input(input_, settings)


def check_tool_call(tool: str, arguments: Any, settings: ServeSettings) -> None:
    """The request guard on a call of `tool`: the checks a run of its graph passes."""
    check_run_request(*tool_run_request(tool, arguments, None), settings)


def tool_run_request(tool: str, arguments: Any, context: Any) -> tuple[Any, Any]:
    """The RAPID (input, context) of a call of `tool`; wrong argument names or types raise `InputError`."""
    inputs, overrides = to_rapid_request(tool, arguments)
    if overrides and (context is None or isinstance(context, dict)):
        context = (context or {}) | overrides
    return inputs, context


def check_input(input_: Any, settings: ServeSettings) -> None:
    if not isinstance(input_, dict):
        raise InputError(f"input must be an object with fields among {sorted(INPUT_FIELDS)}, got {kind(input_)}")
    if unknown := set(input_) - INPUT_FIELDS:
        raise InputError(f"unknown input field(s) {sorted(unknown)}; expected among {sorted(INPUT_FIELDS)}")
    validate_request(input_, settings.text_limit())
    images = input_.get("images", [])
    if not isinstance(images, list) or not all(isinstance(image, str) for image in images):
        raise InputError("input.images must be a list of strings (base64, data: URLs, allowed paths or URLs)")
    check_images(images, settings.image_policy())


def check_context(context: Any, settings: ServeSettings) -> None:
    if context is None:
        return
    if not isinstance(context, dict):
        raise ConfigError(f"context must be an object with fields among {sorted(CONTEXT_FIELDS)}, got {kind(context)}")
    if unknown := set(context) - CONTEXT_FIELDS:
        raise ConfigError(f"unknown context field(s) {sorted(unknown)}; expected among {sorted(CONTEXT_FIELDS)}")
    if context.get("reasoner") is not None:
        check_spec(context["reasoner"], "context.reasoner", settings)
    captioner = context.get("captioner")
    if isinstance(captioner, list):
        for i, spec in enumerate(captioner):
            check_spec(spec, f"context.captioner[{i}]", settings)
        if not captioner or len({spec.strip() for spec in captioner}) != len(captioner):
            raise ConfigError("context.captioner: a captioner list needs distinct specs, at least one")
    elif captioner is not None:
        check_spec(captioner, "context.captioner", settings)
    preset = context.get("prompt_preset")
    if preset is not None and (not isinstance(preset, str) or preset not in PRESETS):
        raise ConfigError(f"context.prompt_preset must be one of {sorted(PRESETS)}, got {preset!r:.100}")
    _check_count(context, "max_recaption_rounds", 0, settings.rounds_limit, "rounds_limit")
    _check_count(context, "reasoner_samples", 1, settings.max_reasoner_samples, "max_reasoner_samples")


def check_spec(spec: Any, where: str, settings: ServeSettings) -> None:
    if not isinstance(spec, str):
        raise ConfigError(f"{where} must be a model spec string, got {kind(spec)}")
    if spec.strip() not in settings.allowed_model_specs:
        raise ConfigError(
            f"{where}: model spec {spec!r:.200} is not allowed on this server; allowed: "
            f"{sorted(settings.allowed_model_specs)} (set {ENV_NAMES['allowed_specs']})"
        )


class AllowlistResolver(ModelResolver):
    """A `ModelResolver` that builds models only from the settings' allowed specs."""

    def __init__(self, settings: ServeSettings) -> None:
        super().__init__({role: settings.generation(role) for role in ("captioner", "reasoner")})
        self.settings = settings

    def resolve(self, model: BaseChatModel | str, role: Role) -> BaseChatModel:
        if not isinstance(model, BaseChatModel):
            check_spec(model, role, self.settings)
        return super().resolve(model, role)


def _check_count(context: dict, key: str, low: int, high: int, setting: str) -> None:
    """`context[key]`, when given, is an integer from `low` to `high` (the limit set by `setting`)."""
    value = context.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
        raise ConfigError(f"context.{key} must be an integer from {low} to {high} ({ENV_NAMES[setting]}), got {value!r:.100}")
