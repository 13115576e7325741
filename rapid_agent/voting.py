"""Self-consistency: a vote over the answers of k reasoner samples on the same caption(s).

Answers that `rapid_agent.answers.grade` finds equal are one vote ("0.5" and "1/2", "B" and the text
of option B), counted under the spelling that came first. The answer with the most votes wins; a tie
between the top answers, or no answer in any sample, has no winner and says so (`outcome`): nothing
is decided silently. The graph votes with the options it shows the reasoner (`build_rapid_graph(...,
reasoner_samples=k)`); the eval harness votes over its own graded predictions with the same
`vote_answers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from typing_extensions import TypedDict

from rapid_agent.answers import grade

VoteOutcome = Literal["majority", "tie", "no_answer"]
"""`majority`: one answer has the most votes; `tie`: several share the most; `no_answer`: no sample answered."""


class ReasonerSample(TypedDict):
    """One reasoner sample: its whole output, the answer extracted from it, and whether it was cut off."""

    reasoning: str
    answer: str | None
    truncated: bool


class VoteCount(TypedDict):
    """One distinct answer (its first spelling) and how many samples gave it."""

    answer: str
    votes: int


class Vote(TypedDict):
    """The vote over k samples: the winner (None on a tie or with no answer), the counts, most votes
    first (ties in order of first appearance), and every sample."""

    outcome: VoteOutcome
    answer: str | None
    counts: list[VoteCount]
    samples: list[ReasonerSample]


def same_answer(a: str, b: str, options: Sequence[str] | None = None) -> bool:
    """True when two extracted answers are one answer, by the grader's conventions (either way round)."""
    if a.strip() == b.strip():
        return True
    if not a.strip() or not b.strip():
        return False
    return grade(a, b, options=options).correct or grade(b, a, options=options).correct


def count_votes(answers: Sequence[str | None], options: Sequence[str] | None = None) -> list[VoteCount]:
    """Distinct answers with their votes, most first (None answers do not vote)."""
    counts: list[VoteCount] = []
    for answer in answers:
        if answer is None:
            continue
        match = next((c for c in counts if same_answer(c["answer"], answer, options)), None)
        if match is None:
            counts.append(VoteCount(answer=answer, votes=1))
        else:
            match["votes"] += 1
    return sorted(counts, key=lambda c: -c["votes"])  # stable: ties keep their first-appearance order


def vote_answers(answers: Sequence[str | None], options: Sequence[str] | None = None) -> tuple[VoteOutcome, str | None, list[VoteCount]]:
    """(outcome, winning answer or None, counts) of a vote over extracted answers."""
    counts = count_votes(answers, options)
    if not counts:
        return "no_answer", None, counts
    if len(counts) > 1 and counts[1]["votes"] == counts[0]["votes"]:
        return "tie", None, counts
    return "majority", counts[0]["answer"], counts


def vote(samples: Sequence[ReasonerSample], options: Sequence[str] | None = None) -> Vote:
    """The vote over reasoner samples (see the module docstring)."""
    outcome, answer, counts = vote_answers([s["answer"] for s in samples], options)
    return Vote(outcome=outcome, answer=answer, counts=counts, samples=list(samples))


def representative(samples: Sequence[ReasonerSample], result: Vote, options: Sequence[str] | None = None) -> ReasonerSample | None:
    """The first sample whose answer is the vote's (with no answer at all: the first sample); None on a tie."""
    if result["outcome"] == "tie":
        return None
    if result["answer"] is None:
        return samples[0] if samples else None
    return next(s for s in samples if s["answer"] is not None and same_answer(s["answer"], result["answer"], options))
