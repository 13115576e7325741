"""Typed errors: each names what is wrong, so callers (CLIs, the server) can report it plainly."""


class RapidError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(RapidError, ValueError):
    """A bad setting: unknown preset, malformed model spec, impossible value."""


class InputError(RapidError, ValueError):
    """A bad request: empty question, malformed options, too many images."""


class ImageInputError(InputError):
    """An image that cannot be used: missing, unreadable, too large, outside the allowed root."""


class BackendError(RapidError, RuntimeError):
    """A model backend failed (after retries) or timed out; names the role and the model."""
