"""`ServeSettings`: everything the served graph reads from the environment, read in one place.

    RAPID_CAPTIONER                    captioner spec (default "miniworld:captioner": reads bar charts only)
    RAPID_REASONER                     reasoner spec (default "miniworld:reasoner-large")
    RAPID_PROMPT_PRESET                prompt preset (default "paper-train")
    RAPID_MAX_RECAPTION_ROUNDS         re-caption rounds of the `rapid` graph (default 0)
    RAPID_RECAPTION_GRAPH_ROUNDS       re-caption rounds of the `rapid_recaption` graph (default 2)
    RAPID_ROUNDS_LIMIT                 most rounds a run's context may ask for (default 3)
    RAPID_REASONER_SAMPLES             reasoner samples put to a vote per run (default 1: no vote)
    RAPID_MAX_REASONER_SAMPLES         most samples a run's context or a tool call may ask for (default 5)
    RAPID_ALLOWED_SPECS                comma-separated extra model specs a run's context may name;
                                       RAPID_CAPTIONER and RAPID_REASONER are always allowed
    RAPID_CAPTION_MAX_NEW_TOKENS       captioner budget per call (default: the role's, 1024; 64 for tiny)
    RAPID_REASON_MAX_NEW_TOKENS        reasoner budget per call (default: the role's, 8192; 64 for tiny);
                                       a served model's budget is fitted to the context its server reports
    RAPID_CALL_TIMEOUT_S               bound on each model call, seconds (default 120)
    RAPID_IMAGE_ROOT                   local image paths are accepted only under this folder (unset: none)
    RAPID_ALLOW_IMAGE_URLS             "1" to fetch public http(s) image URLs (default off)
    RAPID_MAX_IMAGE_BYTES              largest encoded image (default 10485760)
    RAPID_MAX_IMAGE_PIXELS             largest decoded width*height (default 40000000)
    RAPID_MAX_IMAGES                   most images per run (default 8)
    RAPID_MAX_TEXT_CHARS               longest question / option / caption (default 8000)
    RAPID_API_KEYS                     comma-separated API keys accepted by the server (required by auth)
    RAPID_CAPTION_CACHE                cache of the captioner's outputs (rapid_agent.caching): a SQLite file
                                       path, shared by every process that names it, or ":memory:" (unset: off)
    RAPID_CAPTION_CACHE_TTL_S          seconds a cached caption lives (unset: for ever)

With neither model set, the server starts on the shipped miniature-world models, which read this
project's bar charts and nothing else, and says so in one line (`default_models_notice`): a server
that answers from the first minute shows the whole path working, and the notice names the variables
that put real models in their place (docs/serving.md, "Models").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from langgraph.cache.base import BaseCache
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from rapid_agent.caching import open_caption_cache
from rapid_agent.errors import ConfigError
from rapid_agent.images import ImagePolicy
from rapid_agent.models.spec import GenerationSettings, Role
from rapid_agent.validation import MAX_TEXT_CHARS, TextLimit

ENV_NAMES = {
    "captioner": "RAPID_CAPTIONER",
    "reasoner": "RAPID_REASONER",
    "prompt_preset": "RAPID_PROMPT_PRESET",
    "max_recaption_rounds": "RAPID_MAX_RECAPTION_ROUNDS",
    "recaption_graph_rounds": "RAPID_RECAPTION_GRAPH_ROUNDS",
    "rounds_limit": "RAPID_ROUNDS_LIMIT",
    "reasoner_samples": "RAPID_REASONER_SAMPLES",
    "max_reasoner_samples": "RAPID_MAX_REASONER_SAMPLES",
    "allowed_specs": "RAPID_ALLOWED_SPECS",
    "caption_max_new_tokens": "RAPID_CAPTION_MAX_NEW_TOKENS",
    "reason_max_new_tokens": "RAPID_REASON_MAX_NEW_TOKENS",
    "call_timeout_s": "RAPID_CALL_TIMEOUT_S",
    "image_root": "RAPID_IMAGE_ROOT",
    "allow_image_urls": "RAPID_ALLOW_IMAGE_URLS",
    "max_image_bytes": "RAPID_MAX_IMAGE_BYTES",
    "max_image_pixels": "RAPID_MAX_IMAGE_PIXELS",
    "max_images": "RAPID_MAX_IMAGES",
    "max_text_chars": "RAPID_MAX_TEXT_CHARS",
    "api_keys": "RAPID_API_KEYS",
    "caption_cache": "RAPID_CAPTION_CACHE",
    "caption_cache_ttl_s": "RAPID_CAPTION_CACHE_TTL_S",
}
_LISTS = {"allowed_specs", "api_keys"}
DEFAULT_CAPTIONER = "miniworld:captioner"
DEFAULT_REASONER = "miniworld:reasoner-large"


class ServeSettings(BaseModel):
    """Settings of the served RAPID graphs; build with `ServeSettings.from_env()`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    captioner: str = DEFAULT_CAPTIONER
    reasoner: str = DEFAULT_REASONER
    prompt_preset: str = "paper-train"
    max_recaption_rounds: int = Field(0, ge=0)
    recaption_graph_rounds: int = Field(2, ge=1)
    rounds_limit: int = Field(3, ge=0)
    reasoner_samples: int = Field(1, ge=1)
    max_reasoner_samples: int = Field(5, ge=1)
    allowed_specs: tuple[str, ...] = ()
    caption_max_new_tokens: int | None = Field(None, gt=0)
    reason_max_new_tokens: int | None = Field(None, gt=0)
    call_timeout_s: float = Field(120.0, gt=0)
    image_root: Path | None = None
    allow_image_urls: bool = False
    max_image_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(40_000_000, gt=0)
    max_images: int = Field(8, gt=0)
    max_text_chars: int = Field(8000, gt=0, le=MAX_TEXT_CHARS)
    api_keys: tuple[SecretStr, ...] = ()
    caption_cache: str | None = None
    caption_cache_ttl_s: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _samples_within_limit(self) -> ServeSettings:
        if self.reasoner_samples > self.max_reasoner_samples:
            raise ValueError(
                f"{ENV_NAMES['reasoner_samples']}={self.reasoner_samples} is above "
                f"{ENV_NAMES['max_reasoner_samples']}={self.max_reasoner_samples}"
            )
        return self

    @field_validator("image_root")
    @classmethod
    def _existing_folder(cls, root: Path | None) -> Path | None:
        if root is not None and not root.is_dir():
            raise ValueError(f"{str(root)!r} is not a folder")
        return root

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServeSettings:
        """Read `RAPID_*` variables; a bad value raises `ConfigError` naming the variable."""
        if env.get("RAPID_MAX_NEW_TOKENS", "").strip():
            raise ConfigError(
                "RAPID_MAX_NEW_TOKENS is replaced by RAPID_CAPTION_MAX_NEW_TOKENS and RAPID_REASON_MAX_NEW_TOKENS "
                "(one budget per role; unset: the role's default, fitted to a served model's context)"
            )
        values: dict[str, object] = {}
        for field, name in ENV_NAMES.items():
            raw = env.get(name, "").strip()
            if not raw:
                continue
            if field in _LISTS:
                values[field] = tuple(item.strip() for item in raw.split(",") if item.strip())
            elif field == "allow_image_urls":
                if raw not in ("0", "1"):
                    raise ConfigError(f"{name} must be 0 or 1, got {raw!r}")
                values[field] = raw == "1"
            else:
                values[field] = raw
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(f"{ENV_NAMES[str(e['loc'][0])]}: {e['msg']}" if e["loc"] else e["msg"] for e in exc.errors())
            raise ConfigError(f"bad serving settings: {problems}") from None

    @property
    def allowed_model_specs(self) -> frozenset[str]:
        """Specs a run's context may name: the configured captioner and reasoner plus `allowed_specs`."""
        return frozenset({self.captioner, self.reasoner, *self.allowed_specs})

    def image_policy(self) -> ImagePolicy:
        """Strict policy for remote callers: local paths only under `image_root`, URLs only if enabled."""
        return ImagePolicy(
            allowed_root=self.image_root,
            allow_local_paths=self.image_root is not None,
            allow_urls=self.allow_image_urls,
            max_bytes=self.max_image_bytes,
            max_pixels=self.max_image_pixels,
            max_images=self.max_images,
        )

    def text_limit(self) -> TextLimit:
        """The longest text a request may carry, named by its variable in messages."""
        return TextLimit(max_chars=self.max_text_chars, setting=ENV_NAMES["max_text_chars"])

    def default_models_notice(self) -> str | None:
        """One line saying that the shipped miniature-world models are served, or None when models are set."""
        defaults = [(field, spec) for field, spec in (("captioner", self.captioner), ("reasoner", self.reasoner))
                    if spec == {"captioner": DEFAULT_CAPTIONER, "reasoner": DEFAULT_REASONER}[field]]
        if not defaults:
            return None
        named = ", ".join(f"{field} {spec}" for field, spec in defaults)
        variables = " and ".join(ENV_NAMES[field] for field, _ in defaults)
        return (
            f"rapid-agent: serving the shipped miniature-world models ({named}): they read this project's bar "
            f"charts only; set {variables} (or --captioner/--reasoner) to real model specs"
        )

    def open_caption_cache(self) -> BaseCache | None:
        """The caption cache `caption_cache` names (`rapid_agent.caching.open_caption_cache`), or None when
        unset; a path that cannot hold it is a `ConfigError` naming the variable."""
        try:
            return open_caption_cache(self.caption_cache)
        except ConfigError as exc:
            raise ConfigError(f"{ENV_NAMES['caption_cache']}: {exc}") from None

    def generation(self, role: Role) -> GenerationSettings:
        """Decoding settings of one role (None budgets fall back to the role's default)."""
        budget = self.caption_max_new_tokens if role == "captioner" else self.reason_max_new_tokens
        return GenerationSettings(max_new_tokens=budget, timeout_s=self.call_timeout_s)
