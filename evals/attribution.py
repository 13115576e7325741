"""Where each wrong decoupled answer comes from: perception (the caption) or reasoning (the reasoner).

Every decoupled answer that is wrong or truncated (errors have no answer: left out) is attributed by
the first of these that can tell:

1. **exact**: the benchmark knows what each question needs (`Benchmark.caption_holds`; the miniature
   world reads the caption's bar values). The caption holds all of it, right: reasoning; else perception.
2. **evidence**, from what the run already has: another run answered right from the same caption(s):
   reasoning. Every run missed it from this caption, but the captioner's direct answer or another
   caption (another captioner's) led to a right answer: perception. No run got it right: unknown.
3. **judge** (off by default): an LLM read the caption and the question and said whether the caption
   states what the question needs (it cannot see the image: presence, not correctness). Verdicts come
   from `python -m evals.attribution RUN_DIR --judge SPEC`, are kept in `caption_judge.jsonl` and are
   used by every later report of the folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel

from evals.metrics import status
from evals.store import SAMPLES_FILE, SampleRecord, read_records
from evals.tasks import get_benchmark
from rapid_agent.errors import InputError, RapidError
from rapid_agent.prompts import format_question

Cause = Literal["perception", "reasoning", "unknown"]
Basis = Literal["exact", "evidence", "judge", "none"]
CaptionKey = tuple[str, str, str]  # (benchmark, sample id, digest of the captions)
JUDGE_FILE = "caption_judge.jsonl"


class Attribution(BaseModel):
    """The cause of one wrong decoupled answer, what decided it and why, in one line."""

    run: str
    benchmark: str
    id: str
    cause: Cause
    basis: Basis
    why: str


class AttributionRow(BaseModel):
    """The split of one run's wrong answers on one benchmark (counts), and how they were decided."""

    run: str
    benchmark: str
    wrong: int
    perception: int
    reasoning: int
    unknown: int
    by_basis: dict[str, int]

    @property
    def perception_share(self) -> float | None:
        """Perception's share of the attributed errors (None when none was attributed)."""
        known = self.perception + self.reasoning
        return self.perception / known if known else None


class AttributionSplit(BaseModel):
    """Every wrong decoupled answer's attribution, and the split per run and benchmark."""

    samples: list[Attribution]
    rows: list[AttributionRow]


def caption_key(record: SampleRecord) -> CaptionKey:
    """What a caption judge's verdict is about: one sample's captions."""
    digest = hashlib.sha256(json.dumps(record.captions).encode()).hexdigest()[:16]
    return record.benchmark, record.id, digest


def is_wrong(record: SampleRecord) -> bool:
    """A decoupled answer that is wrong or truncated (what is attributed)."""
    outcome = status(correct=record.correct, error=record.error is not None, truncated=record.truncated)
    return record.mode == "decoupled" and outcome in ("wrong", "truncated")


def attribute(
    records: Sequence[SampleRecord], *, judged: Mapping[CaptionKey, bool] | None = None, exact: bool = True
) -> AttributionSplit:
    """Attribute every wrong decoupled answer in `records` (see the module docstring); `judged`: judge
    verdicts; `exact=False` leaves the benchmarks' own checks out (the general rule alone)."""
    by_sample: dict[tuple[str, str], list[SampleRecord]] = defaultdict(list)
    for record in records:
        if record.error is None:
            by_sample[record.benchmark, record.id].append(record)
    samples = [_attribute_one(r, by_sample[r.benchmark, r.id], judged or {}, exact) for r in records if is_wrong(r)]
    return AttributionSplit(samples=samples, rows=_rows(records, samples))


def _attribute_one(
    record: SampleRecord, same_sample: list[SampleRecord], judged: Mapping[CaptionKey, bool], exact: bool
) -> Attribution:
    def found(cause: Cause, basis: Basis, why: str) -> Attribution:
        return Attribution(run=record.run, benchmark=record.benchmark, id=record.id, cause=cause, basis=basis, why=why)

    check = get_benchmark(record.benchmark.split(":")[0]).caption_holds if exact else None
    holds = check(record.id, record.metadata, record.captions) if check else None
    if holds is not None:
        return found("reasoning", "exact", "the caption states every value the question needs, right") if holds else \
            found("perception", "exact", "the caption misses or misstates a value the question needs")
    right = [r for r in same_sample if r.correct and r.run != record.run]
    same = [r.run for r in right if r.mode == "decoupled" and r.captions == record.captions]
    if same:
        return found("reasoning", "evidence", f"{same[0]} answered right from the same caption")
    other = [r.run for r in right if r.mode == "direct" or (r.mode == "decoupled" and r.captions != record.captions)]
    if other:
        return found("perception", "evidence", f"every run missed it from this caption; {other[0]} answered right")
    verdict = judged.get(caption_key(record))
    if verdict is not None:
        return found("reasoning", "judge", "the judge found what the question needs in the caption") if verdict else \
            found("perception", "judge", "the judge did not find what the question needs in the caption")
    return found("unknown", "none", "no run answered it right")


def _rows(records: Sequence[SampleRecord], samples: list[Attribution]) -> list[AttributionRow]:
    wrong: dict[tuple[str, str], list[Attribution]] = {}
    for record in records:  # every decoupled run and benchmark gets a row, first seen first
        if record.mode == "decoupled":
            wrong.setdefault((record.run, record.benchmark), [])
    for sample in samples:
        wrong[sample.run, sample.benchmark].append(sample)
    rows = []
    for (run, bench), found in wrong.items():
        causes = [a.cause for a in found]
        basis: dict[str, int] = defaultdict(int)
        for a in found:
            if a.basis != "none":
                basis[a.basis] += 1
        rows.append(AttributionRow(
            run=run, benchmark=bench, wrong=len(found), perception=causes.count("perception"),
            reasoning=causes.count("reasoning"), unknown=causes.count("unknown"), by_basis=dict(basis),
        ))
    return rows


def markdown_section(split: AttributionSplit) -> str:
    """The report's section (empty without decoupled runs): one row per decoupled run and benchmark."""
    if not split.rows:
        return ""
    header = ["run", "benchmark", "wrong", "perception", "reasoning", "unknown", "perception % of attributed",
              "decided by"]
    lines = ["", "## Where the errors come from (wrong or truncated decoupled answers)", "", _row(header),
             _row(["---"] * len(header))]
    for r in split.rows:
        share = f"{100 * r.perception_share:.1f}" if r.perception_share is not None else "—"
        basis = ", ".join(f"{name} {count}" for name, count in r.by_basis.items()) or "—"
        lines.append(_row([r.run, r.benchmark, *map(str, (r.wrong, r.perception, r.reasoning, r.unknown)), share, basis]))
    lines += ["", "exact: the benchmark's own check of the caption; evidence: another run answered right from the same "
              "caption (reasoning), or only from another caption or the captioner's direct answer (perception); "
              "judge: an LLM read the caption (`python -m evals.attribution`); unknown: no run answered it right."]
    return "\n".join(lines) + "\n"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


# --------------------------------------------------------------------------- the optional caption judge

JUDGE_SYSTEM = (
    "You check whether a description of an image states the information a question about the image needs. "
    "You cannot see the image. Do not answer the question."
)
JUDGE_USER = (
    "Description:\n{caption}\n\nQuestion:\n{question}\n\n"
    "Does the description state every fact about the image that is needed to answer the question? "
    "Reply with a single line 'Verdict: yes' or 'Verdict: no'."
)
_VERDICT = re.compile(r"verdict\s*:\s*\**\s*(yes|no)\b", re.IGNORECASE)


class CaptionVerdict(BaseModel):
    """One judge verdict on one sample's captions (`holds` None: the judge failed or gave no verdict)."""

    benchmark: str
    id: str
    captions_digest: str
    model: str
    holds: bool | None
    output: str | None = None
    error: str | None = None


class CaptionJudge:
    """Wraps a chat model that says whether a caption states what a question needs."""

    def __init__(self, model: BaseChatModel, name: str) -> None:
        self.model, self.name = model, name

    def judge(self, record: SampleRecord) -> CaptionVerdict:
        bench, sample_id, digest = caption_key(record)
        verdict = CaptionVerdict(benchmark=bench, id=sample_id, captions_digest=digest, model=self.name, holds=None)
        text = JUDGE_USER.format(caption="\n\n".join(record.captions), question=format_question(record.question, record.options))
        try:
            reply = self.model.invoke([SystemMessage(JUDGE_SYSTEM), HumanMessage(text)]).text
        except Exception as exc:  # a failed judge leaves the sample unknown
            return verdict.model_copy(update={"error": f"{type(exc).__name__}: {exc}"})
        match = _VERDICT.search(reply)
        return verdict.model_copy(update={"output": reply, "holds": match[1].lower() == "yes" if match else None})


def read_judged(folder: Path) -> dict[CaptionKey, bool]:
    """The caption judge's verdicts kept in `folder` (the last one per captions wins; failures left out)."""
    path = Path(folder) / JUDGE_FILE
    if not path.is_file():
        return {}
    judged: dict[CaptionKey, bool] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            v = CaptionVerdict.model_validate_json(line)
        except ValueError as exc:
            raise InputError(f"{path}:{number}: not a caption verdict ({str(exc)[:200]})") from None
        if v.holds is not None:
            judged[v.benchmark, v.id, v.captions_digest] = v.holds
    return judged


def judge_unknown(records: Sequence[SampleRecord], judge: CaptionJudge, folder: Path) -> list[CaptionVerdict]:
    """Judge the captions of every wrong answer still unknown, once per sample's captions; append the
    verdicts to `folder`'s `caption_judge.jsonl` as they come."""
    split = attribute(records, judged=read_judged(folder))
    unknown = {(a.run, a.benchmark, a.id) for a in split.samples if a.cause == "unknown"}
    todo = {caption_key(r): r for r in records if r.key in unknown}
    verdicts = []
    with (Path(folder) / JUDGE_FILE).open("a", encoding="utf-8") as handle:
        for record in todo.values():
            verdicts.append(judge.judge(record))
            handle.write(verdicts[-1].model_dump_json() + "\n")
            handle.flush()
    return verdicts


def main(argv: Iterable[str] | None = None) -> int:
    """`python -m evals.attribution RUN_DIR --judge SPEC`: judge the unknown errors' captions, rewrite the reports."""
    from evals.lock import FolderLock
    from evals.report import SUMMARY_FILE, write_reports
    from rapid_agent.models.spec import ModelResolver

    p = argparse.ArgumentParser(prog="python -m evals.attribution", description=main.__doc__)
    p.add_argument("folder", type=Path, help="a run folder (with samples.jsonl and summary.json)")
    p.add_argument("--judge", required=True, metavar="SPEC", help="the judge model's spec (e.g. openai:NAME@URL)")
    args = p.parse_args(None if argv is None else list(argv))
    try:
        records = list(read_records(args.folder / SAMPLES_FILE).values())
        if not records:
            raise InputError(f"{str(args.folder)!r} holds no {SAMPLES_FILE}")
        judge = CaptionJudge(ModelResolver().resolve(args.judge, "reasoner"), args.judge)
        lock = FolderLock(args.folder)  # never write into a folder an eval run holds
        lock.acquire()
        try:
            verdicts = judge_unknown(records, judge, args.folder)
            summary_path = args.folder / SUMMARY_FILE
            summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
            write_reports(records, args.folder, config=summary.get("config"), order=list(summary.get("runs", {})))
        finally:
            lock.release()
    except RapidError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = sum(v.holds is None for v in verdicts)
    print(f"judged {len(verdicts)} captions ({failed} without a verdict); reports rewritten in {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
