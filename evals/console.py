"""Console rendering of sample records: what a person reads while an eval runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from evals.report import record_status
from evals.store import SampleRecord

if TYPE_CHECKING:
    from evals.runner import RunResult

MARKS = {"correct": "✓ correct", "wrong": "✗ wrong", "truncated": "✂ truncated (token limit)", "error": "ERROR"}


def clip(text: str | None, limit: int, *, tail: bool = False) -> str:
    """Printable, one-line, shortened text for the console."""
    if text is None:
        return "—"
    flat = " ⏎ ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    flat = "".join(c if c.isprintable() else "·" for c in flat)
    if len(flat) <= limit:
        return flat
    return "…" + flat[-limit:] if tail else flat[:limit] + "…"


def describe_record(record: SampleRecord) -> str:
    """A sample as a human reads it: question, caption, tentative answer, output, verdict."""
    mark = MARKS[record_status(record)]
    lines = [f"── {record.run} · {record.benchmark}/{record.id} · {mark}", f"   question : {clip(record.question, 200)}"]
    if record.options:
        lines.append("   options  : " + "  ".join(f"{chr(65 + i)}. {clip(o, 40)}" for i, o in enumerate(record.options)))
    if record.captions:
        lines.append(f"   caption  : {clip(record.captions[0], 240)}")
    if record.tentative_answer is not None and record.mode != "direct":
        lines.append(f"   tentative: {clip(record.tentative_answer, 160)}")
    if record.error:
        lines.append(f"   error    : {clip(record.error, 300)}")
    else:
        lines.append(f"   output   : {clip(record.output, 240, tail=True)}")
        lines.append(f"   answer   : {clip(record.prediction, 60)}   (gold: {' | '.join(record.gold)})")
    return "\n".join(lines)


def describe_totals(result: RunResult) -> str:
    """What an invocation did, one line: captioner calls by output (a caption and a tentative answer per
    sample are two calls of one pass), cache hits, new results, errors and truncated outputs."""
    kinds = [(result.caption_calls, "caption"), (result.tentative_calls, "tentative answer")]
    calls = " + ".join(f"{n} {name}{'s' if n != 1 else ''}" for n, name in kinds if n) or "0"
    return (f"captioner calls: {calls} (cache hits: {result.cache_hits}) · new results: {result.new_records} · "
            f"errors: {result.errors} · truncated: {result.truncated}")
