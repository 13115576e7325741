"""Checks on what remote callers send, made before a run is queued, and the model-spec allowlist.

`check_run_request` refuses a bad run request with a typed error naming the field and the limit
(`InputError` for the input, `ConfigError` for the context); the auth module turns it into HTTP 422.
`AllowlistResolver` enforces the allowlist again inside the graph, whatever path a context took.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

from graphs.settings import ENV_NAMES, ServeSettings
from rapid_agent.errors import ConfigError, InputError
from rapid_agent.images import check_images
from rapid_agent.models.spec import ModelResolver, Role
from rapid_agent.prompts import MAX_OPTIONS, PRESETS, strip_image_tags
from rapid_agent.state import RapidContext, RapidInput

INPUT_FIELDS = frozenset(RapidInput.__annotations__)
CONTEXT_FIELDS = frozenset(RapidContext.model_fields)


def check_run_request(input_: Any, context: Any, settings: ServeSettings) -> None:
    """Refuse a run whose input or context the served graph must not run (raises before any model)."""
    check_context(context, settings)
    check_input(input_, settings)


def check_input(input_: Any, settings: ServeSettings) -> None:
    if not isinstance(input_, dict):
        raise InputError(f"input must be an object with fields among {sorted(INPUT_FIELDS)}, got {_kind(input_)}")
    if unknown := set(input_) - INPUT_FIELDS:
        raise InputError(f"unknown input field(s) {sorted(unknown)}; expected among {sorted(INPUT_FIELDS)}")
    question = input_.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InputError("input.question is required and must be a non-empty string")
    _check_text("input.question", question, settings)
    if not strip_image_tags(question):
        raise InputError("input.question has no text besides <image N> tags")
    options = input_.get("options")
    if options is not None:
        _check_texts("input.options", options, settings, non_empty=True)
        if len(options) > MAX_OPTIONS:
            raise InputError(f"input.options has {len(options)} options; the limit is {MAX_OPTIONS} (A-Z)")
    if input_.get("captions") is not None:
        _check_texts("input.captions", input_["captions"], settings, non_empty=False)
    tentative = input_.get("tentative_answer")
    if tentative is not None:
        if not isinstance(tentative, str):
            raise InputError(f"input.tentative_answer must be a string, got {_kind(tentative)}")
        _check_text("input.tentative_answer", tentative, settings)
    images = input_.get("images", [])
    if not isinstance(images, list) or not all(isinstance(image, str) for image in images):
        raise InputError("input.images must be a list of strings (base64, data: URLs, allowed paths or URLs)")
    check_images(images, settings.image_policy())


def check_context(context: Any, settings: ServeSettings) -> None:
    if context is None:
        return
    if not isinstance(context, dict):
        raise ConfigError(f"context must be an object with fields among {sorted(CONTEXT_FIELDS)}, got {_kind(context)}")
    if unknown := set(context) - CONTEXT_FIELDS:
        raise ConfigError(f"unknown context field(s) {sorted(unknown)}; expected among {sorted(CONTEXT_FIELDS)}")
    for role in ("captioner", "reasoner"):
        if context.get(role) is not None:
            check_spec(context[role], f"context.{role}", settings)
    preset = context.get("prompt_preset")
    if preset is not None and (not isinstance(preset, str) or preset not in PRESETS):
        raise ConfigError(f"context.prompt_preset must be one of {sorted(PRESETS)}, got {preset!r:.100}")
    rounds = context.get("max_recaption_rounds")
    if rounds is not None and (
        isinstance(rounds, bool) or not isinstance(rounds, int) or not 0 <= rounds <= settings.rounds_limit
    ):
        raise ConfigError(
            f"context.max_recaption_rounds must be an integer from 0 to {settings.rounds_limit} "
            f"({ENV_NAMES['rounds_limit']}), got {rounds!r:.100}"
        )


def check_spec(spec: Any, where: str, settings: ServeSettings) -> None:
    if not isinstance(spec, str):
        raise ConfigError(f"{where} must be a model spec string, got {_kind(spec)}")
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


def _check_text(where: str, text: str, settings: ServeSettings) -> None:
    if len(text) > settings.max_text_chars:
        raise InputError(
            f"{where} has {len(text)} characters; the limit is {settings.max_text_chars} ({ENV_NAMES['max_text_chars']})"
        )


def _check_texts(where: str, texts: Any, settings: ServeSettings, *, non_empty: bool) -> None:
    if not isinstance(texts, list) or not all(isinstance(t, str) and (t.strip() or not non_empty) for t in texts):
        kind = "non-empty strings" if non_empty else "strings"
        raise InputError(f"{where} must be a list of {kind}, got {texts!r:.200}")
    for i, text in enumerate(texts):
        _check_text(f"{where}[{i}]", text, settings)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
