"""The VPO reward: the RAPID graph, fed the policy's captions, graded against gold.

`GraphReward` is an async TRL reward function. For a batch of B×G captions it runs the compiled
graph (a state carrying `captions` skips the caption node) once per caption, reasoner and reasoner
sample, through `graph.abatch` bounded by `concurrency` per reasoner (a local HF reasoner
micro-batches these concurrent calls into padded `generate` calls), grades each extracted answer
with `rapid_agent.grade`, and returns the mean accuracy per caption. Errors the graph's retry
policy could not absorb leave that sample out; a caption with no successful sample gets
`failed_reward` (None: TRL leaves it out of the loss). Nothing raised by a reasoner stops training.

A *pool* of reasoners (`PoolReasoner`s) is served by the same graph, the reasoner swapped per call
through its context: in mode `all` every caption is read by every reasoner and its reward is the
weighted mean of their accuracies; in mode `sample` each prompt group is read by one reasoner,
drawn by weight from (seed, step, row id), so every process draws the same one for a group.

`caption_length` is an optional extra term, weighted through TRL's `reward_weights`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langgraph.graph.state import CompiledStateGraph

from rapid_agent.answers import grade
from rapid_agent.state import RapidContext

log = logging.getLogger(__name__)


def completion_text(completion: Any) -> str:
    """TRL's completion (a message list for conversational data, else a string) as plain text."""
    if isinstance(completion, str):
        return completion
    return "".join(str(message.get("content") or "") for message in completion)


def row_options(options: Sequence[Sequence[str] | None] | None, n: int) -> list[list[str] | None]:
    """TRL's `options` column (a list per row; empty or None: no options) as lists or None."""
    if options is None:
        return [None] * n
    return [list(opt) or None if opt is not None else None for opt in options]


@dataclass(frozen=True)
class PoolReasoner:
    """One reasoner of the reward's pool: its metric name, the model (or spec), its weight, and the
    identity of its weights (`rapid_agent.models.identity`; keys the difficulty filter's cache)."""

    name: str
    model: BaseChatModel | str | None  # None: the graph's own reasoner
    weight: float = 1.0
    identity: str = ""


class GraphReward:
    """Async reward function over the RAPID graph (see the module docstring)."""

    __name__ = "reasoner_accuracy"

    def __init__(
        self,
        graph: CompiledStateGraph,
        *,
        pool: Sequence[PoolReasoner] | None = None,
        pool_mode: Literal["all", "sample"] = "all",
        samples: int = 1,
        concurrency: int = 64,
        failed_reward: float | None = None,
        seed: int = 0,
    ) -> None:
        if samples < 1 or concurrency < 1:
            raise ValueError("samples and concurrency must be >= 1")
        self.pool = list(pool) if pool else [PoolReasoner("reasoner", None)]
        if pool_mode not in ("all", "sample") or any(r.weight < 0 for r in self.pool) or not sum(r.weight for r in self.pool):
            raise ValueError("pool_mode must be 'all' or 'sample', and pool weights non-negative, not all zero")
        if len({r.name for r in self.pool}) < len(self.pool):
            raise ValueError(f"pool reasoner names must differ: {[r.name for r in self.pool]}")
        self.graph = graph
        self.pool_mode = pool_mode
        self.samples = samples
        self.concurrency = concurrency
        self.failed_reward = failed_reward
        self.seed = seed

    def readers(self, row_ids: Sequence[str], step: int) -> list[list[int]]:
        """For each caption, the pool indices that read it (every one, or one drawn per prompt group)."""
        everyone = [i for i, r in enumerate(self.pool) if r.weight > 0]
        if self.pool_mode == "all" or len(everyone) == 1:
            return [everyone for _ in row_ids]
        weights = [self.pool[i].weight for i in everyone]
        return [random.Random(f"{self.seed}:{step}:{row_id}").choices(everyone, weights)[:1] for row_id in row_ids]

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
        trainer_state: Any = None,
        log_metric: Callable[[str, float], None] | None = None,
        log_extra: Callable[[str, list], None] | None = None,
        **_: Any,
    ) -> list[float | None]:
        n, k = len(completions), self.samples
        captions = [completion_text(c) for c in completions]
        opts = row_options(options, n)
        ids = list(row_id) if row_id else [str(i) for i in range(n)]
        readers = self.readers(ids, getattr(trainer_state, "global_step", 0))
        jobs = [(i, m) for i in range(n) for m in readers[i]]  # (caption, pool member), each read k times
        by_member = {m: [j for j, (_, mm) in enumerate(jobs) if mm == m] for m in {m for _, m in jobs}}
        results: list[list[Any]] = [[] for _ in jobs]

        async def read(member: int) -> None:
            model = self.pool[member].model
            inputs = [
                {"question": question[i], "options": opts[i], "captions": [captions[i]]}
                for i, _ in (jobs[j] for j in by_member[member]) for _ in range(k)
            ]
            outputs = await self.graph.abatch(
                inputs, config={"max_concurrency": self.concurrency}, return_exceptions=True,
                context=RapidContext(reasoner=model) if model is not None else None,
            )
            for slot, j in enumerate(by_member[member]):
                results[j] = outputs[slot * k : (slot + 1) * k]

        await asyncio.gather(*(read(m) for m in by_member))

        rewards: list[float | None] = []
        answers: list[str] = []
        errors: list[BaseException] = []
        correct_flags: list[bool] = []
        per_member: dict[int, list[bool]] = {m: [] for m in by_member}
        latencies: list[float] = []
        job_index = {job: j for j, job in enumerate(jobs)}
        for i in range(n):
            weighted, weights, shown = 0.0, 0.0, []
            for m in readers[i]:
                graded = []
                for out in results[job_index[(i, m)]]:
                    if isinstance(out, BaseException):
                        errors.append(out)
                        shown.append(f"<error: {type(out).__name__}>")
                        continue
                    verdict = grade(
                        out.get("answer"), answer[i], options=opts[i],
                        answer_type=(answer_type[i] if answer_type else None) or "auto",
                    )
                    graded.append(verdict.correct)
                    shown.append(str(out.get("answer")))
                    latencies += [u["latency_s"] for u in out.get("usage", []) if u["node"] == "reason"]
                correct_flags += graded
                per_member[m] += graded
                if graded:
                    weighted += self.pool[m].weight * sum(graded) / len(graded)
                    weights += self.pool[m].weight
            rewards.append(weighted / weights if weights else self.failed_reward)
            answers.append(" | ".join(shown))

        if errors:
            log.warning(
                "reward: %d of %d reasoner calls failed after retries (first: %s: %s)",
                len(errors), len(jobs) * k, type(errors[0]).__name__, errors[0],
            )
        if log_metric is not None:
            self._log_metrics(log_metric, rewards, correct_flags, errors, latencies, captions, completion_ids, row_id)
            if len(self.pool) > 1:
                for m, graded in per_member.items():
                    if graded:
                        log_metric(f"vpo/reasoner_accuracy/{self.pool[m].name}", statistics.fmean(graded))
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
