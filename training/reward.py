"""The VPO reward: the RAPID graph, fed the policy's captions, graded against gold.

`GraphReward` is an async TRL reward function. For a batch of B×G captions it runs the compiled
graph (a state carrying `captions` skips the caption node) once per caption and reasoner sample,
all through one `graph.abatch` bounded by `concurrency` (a local HF reasoner micro-batches these
concurrent calls into padded `generate` calls), grades each extracted answer with
`rapid_agent.grade`, and returns the mean accuracy per caption. Errors the graph's retry policy
could not absorb leave that sample out; a caption with no successful sample gets `failed_reward`
(None: TRL leaves it out of the loss). Nothing raised by the reasoner stops training.

`caption_length` is an optional extra term, weighted through TRL's `reward_weights`.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from rapid_agent.answers import grade

log = logging.getLogger(__name__)


def completion_text(completion: Any) -> str:
    """TRL's completion (a message list for conversational data, else a string) as plain text."""
    if isinstance(completion, str):
        return completion
    return "".join(str(message.get("content") or "") for message in completion)


class GraphReward:
    """Async reward function over the RAPID graph (see the module docstring)."""

    __name__ = "reasoner_accuracy"

    def __init__(
        self,
        graph: CompiledStateGraph,
        *,
        samples: int = 1,
        concurrency: int = 64,
        failed_reward: float | None = None,
    ) -> None:
        if samples < 1 or concurrency < 1:
            raise ValueError("samples and concurrency must be >= 1")
        self.graph = graph
        self.samples = samples
        self.concurrency = concurrency
        self.failed_reward = failed_reward

    async def __call__(
        self,
        prompts: list,
        completions: list,
        completion_ids: list[list[int]] | None = None,
        *,
        question: Sequence[str],
        answer: Sequence[str],
        options: Sequence[Sequence[str] | None] | None = None,
        answer_type: Sequence[str] | None = None,
        row_id: Sequence[str] | None = None,
        log_metric: Callable[[str, float], None] | None = None,
        log_extra: Callable[[str, list], None] | None = None,
        **_: Any,
    ) -> list[float | None]:
        n, k = len(completions), self.samples
        captions = [completion_text(c) for c in completions]
        opts = [list(o) or None if o is not None else None for o in (options or [None] * n)]
        inputs = [
            {"question": question[i], "options": opts[i], "captions": [captions[i]]} for i in range(n) for _ in range(k)
        ]
        outputs = await self.graph.abatch(inputs, config={"max_concurrency": self.concurrency}, return_exceptions=True)

        rewards: list[float | None] = []
        answers: list[str] = []
        errors: list[BaseException] = []
        correct_flags: list[bool] = []
        latencies: list[float] = []
        for i in range(n):
            graded = []
            shown = []
            for out in outputs[i * k : (i + 1) * k]:
                if isinstance(out, BaseException):
                    errors.append(out)
                    shown.append(f"<error: {type(out).__name__}>")
                    continue
                verdict = grade(
                    out.get("answer"),
                    answer[i],
                    options=opts[i],
                    answer_type=(answer_type[i] if answer_type else None) or "auto",
                )
                graded.append(verdict.correct)
                shown.append(str(out.get("answer")))
                latencies += [u["latency_s"] for u in out.get("usage", []) if u["node"] == "reason"]
            correct_flags += graded
            rewards.append(sum(graded) / len(graded) if graded else self.failed_reward)
            answers.append(" | ".join(shown))

        if errors:
            log.warning(
                "reward: %d of %d reasoner calls failed after retries (first: %s: %s)",
                len(errors), n * k, type(errors[0]).__name__, errors[0],
            )
        if log_metric is not None:
            self._log_metrics(log_metric, rewards, correct_flags, errors, latencies, captions, completion_ids, row_id)
        if log_extra is not None:
            log_extra("reasoner_answer", answers)
            log_extra("gold", [str(a) for a in answer])
        return rewards

    def _log_metrics(self, log_metric, rewards, correct_flags, errors, latencies, captions, completion_ids, row_id):
        scored = [r for r in rewards if r is not None]
        lengths = [len(ids) for ids in completion_ids] if completion_ids else [len(c.split()) for c in captions]
        log_metric("vpo/reward_mean", statistics.fmean(scored) if scored else 0.0)
        log_metric("vpo/reward_std", statistics.pstdev(scored) if len(scored) > 1 else 0.0)
        log_metric("vpo/reasoner_accuracy", statistics.fmean(correct_flags) if correct_flags else 0.0)
        log_metric("vpo/reasoner_errors", float(len(errors)))
        log_metric("vpo/reasoner_latency_s", statistics.fmean(latencies) if latencies else 0.0)
        log_metric("vpo/caption_length", statistics.fmean(lengths) if lengths else 0.0)
        log_metric("vpo/frac_zero_std_groups", zero_variance_fraction(rewards, row_id))


def zero_variance_fraction(rewards: Sequence[float | None], group_ids: Sequence[str] | None) -> float:
    """Fraction of groups (consecutive rows with the same id) whose rewards are all equal."""
    if not rewards:
        return 0.0
    ids = list(group_ids) if group_ids else [""] * len(rewards)
    groups: list[list[float | None]] = []
    for i, reward in enumerate(rewards):
        if i and ids[i] == ids[i - 1]:
            groups[-1].append(reward)
        else:
            groups.append([reward])
    return sum(len(set(g)) == 1 for g in groups) / len(groups)


def caption_length(completions: list, completion_ids: list[list[int]] | None = None, *, max_tokens: int, **_: Any) -> list[float]:
    """Length term in [-1, 0]: minus the caption's tokens over `max_tokens` (bind `max_tokens` first)."""
    if completion_ids is not None:
        return [-len(ids) / max_tokens for ids in completion_ids]
    return [-len(completion_text(c).split()) / max_tokens for c in completions]
