"""The evals' pre-check of served models, before any model call (see `rapid_agent.models.served.precheck`)."""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable

from langchain_core.language_models import BaseChatModel

from rapid_agent.models.served import precheck

BUDGET_FLAGS = {
    "captioner": "--caption-max-new-tokens",
    "reasoner": "--reason-max-new-tokens",
    "judge": "--reason-max-new-tokens",
}
"""The `python -m evals.run` flag that sets each role's token budget (the judge decodes as the reasoners do)."""


def check_endpoints(
    specs: Iterable[tuple[str, str]],
    skip: Container[str] = (),
    *,
    resolve: Callable[[str, str], BaseChatModel],
) -> None:
    """Check every `(role, spec)` served model (name, reachability) and fit its budget, or raise `BackendError`.

    `resolve(spec, role)` gives the model the run will call (its `ModelResolver.resolve`), so the fitted
    budget is the one it uses; the judge resolves as a reasoner. Specs in `skip` are not checked.
    """
    pairs = [(role, resolve(spec, "captioner" if role == "captioner" else "reasoner"))
             for role, spec in specs if spec not in skip]
    precheck(pairs, BUDGET_FLAGS)
