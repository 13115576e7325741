"""Self-consistency scores of a run whose samples were answered k times (`EvalConfig.reasoner_samples`).

vote@k is the accuracy of the vote (the record's own verdict: the majority answer, a tie or no answer
being wrong); pass@k the share of samples where any of the k answers is right; sample accuracy the
mean accuracy of a single sample, the k = 1 figure at the sampling temperature. Errors count as wrong,
as in accuracy. Intervals are Wilson's (pass@k, vote@k) over the samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from evals.metrics import Score, proportion
from evals.store import SampleRecord


class VoteScores(BaseModel):
    """vote@k, pass@k and a single sample's accuracy over one run's samples on one benchmark."""

    k: int
    vote_at_k: Score
    pass_at_k: Score
    sample_accuracy: float
    ties: int
    no_answer: int


def vote_scores(records: Sequence[SampleRecord]) -> VoteScores | None:
    """The scores of voted records (None when the run did not vote)."""
    voted = [r.votes for r in records if r.votes is not None]
    if not voted:
        return None
    n = len(records)
    return VoteScores(
        k=max(len(v.correct) for v in voted),
        vote_at_k=proportion(sum(r.correct for r in records), n),
        pass_at_k=proportion(sum(any(v.correct) for v in voted), n),
        sample_accuracy=sum(sum(v.correct) / len(v.correct) for v in voted) / n,
        ties=sum(v.outcome == "tie" for v in voted),
        no_answer=sum(v.outcome == "no_answer" for v in voted),
    )


def votes_table(runs: Mapping[str, Any]) -> list[str]:
    """Markdown lines: one row per voted run and benchmark (none when no run voted)."""
    rows = [(label, bench, r.votes) for label, run in runs.items() for bench, r in run.benchmarks.items() if r.votes]
    if not rows:
        return []

    def cell(score: Score) -> str:
        return f"{100 * score.value:.1f} [{100 * score.low:.1f}, {100 * score.high:.1f}]"

    lines = ["", "## Votes (k reasoner samples per question)", "",
             "| run | benchmark | k | vote@k % | pass@k % | one sample % | ties | no answer |", "|---" * 8 + "|"]
    lines += [f"| {label} | {bench} | {v.k} | {cell(v.vote_at_k)} | {cell(v.pass_at_k)} | {100 * v.sample_accuracy:.1f} "
              f"| {v.ties} | {v.no_answer} |" for label, bench, v in rows]
    return lines
