"""A quick reachability check of OpenAI-compatible endpoints before any work starts."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Container, Iterable

from rapid_agent.errors import BackendError
from rapid_agent.models.spec import parse_spec

TIMEOUT_S = 5.0


def check_endpoints(specs: Iterable[tuple[str, str]], skip: Container[str] = ()) -> None:
    """Raise `BackendError` naming the first `(role, spec)` whose `@URL` endpoint does not answer.

    Any HTTP answer (even an error status) counts as reachable; specs in `skip` are not checked.
    """
    for role, spec in specs:
        if spec in skip:
            continue
        provider, _, base_url = parse_spec(spec)
        if provider != "openai" or base_url is None:
            continue
        try:
            with urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=TIMEOUT_S):
                pass
        except urllib.error.HTTPError:
            continue
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BackendError(
                f"the {role} endpoint {base_url} is unreachable ({reason}); start the server or fix the spec {spec!r}"
            ) from None
