"""Typed errors: each names what is wrong, so callers (CLIs, the server) can report it plainly."""

from __future__ import annotations

from pydantic import ValidationError


class RapidError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(RapidError, ValueError):
    """A bad setting: unknown preset, malformed model spec, impossible value."""


class InputError(RapidError, ValueError):
    """A bad request: empty question, malformed options, too many images."""


class ImageInputError(InputError):
    """An image that cannot be used: missing, unreadable, too large, outside the allowed root."""


class BackendError(RapidError, RuntimeError):
    """A model backend failed or timed out; names the node and the model.

    `transient` marks failures worth retrying (connection problems, time-outs, server errors).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def describe_validation(exc: ValidationError, where: str) -> str:
    """One line naming each bad field of a pydantic `ValidationError`: "where.field: message; ..."."""
    return "; ".join(
        f"{'.'.join([where, *map(str, e['loc'])]) if e['loc'] else where}: {e['msg']}" for e in exc.errors()
    )
