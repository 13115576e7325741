"""What each inference-time knob buys in the miniature world: votes (k reasoner samples) and both captioners.

    python -m training.miniworld.knobs [--items 200] [--out runs/miniworld-knobs] [--doc docs/miniworld.md]

Runs `python -m evals.run` on held-out `miniworld` items with the shipped models (`miniworld:captioner`,
both reasoners): each reasoner greedy (k = 1, the baseline); sampled at the paper recipe's reasoner
temperature (the miniature-world recipe's reasoner is greedy, where k votes are k copies of one answer)
with k = 1, 3, 5 and 9 votes; and greedy reading the descriptions of both captioners (`captioner` and
`captioner-sft`, a captioner list). Every configuration sees the same items and the same cached
captions (a first, untimed run caches both captioners' captions), so wall times compare reasoning alone.
The table it writes between `KNOBS_START` and `KNOBS_END` in the doc gives, per reasoner and
configuration, accuracy with a paired 95% interval against k = 1 greedy, pass@k, reasoner tokens per
item (all k calls) and wall time relative to k = 1 greedy; `kept_section` lets the full report
(`training.miniworld.report`) keep it when it rewrites the page.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from evals.metrics import compare
from evals.run import main as run_evals
from evals.store import SAMPLES_FILE, read_records
from training.config import recipe

KNOBS_START, KNOBS_END = "<!-- knobs:start -->", "<!-- knobs:end -->"
CAPTIONER, SECOND_CAPTIONER = "miniworld:captioner", "miniworld:captioner-sft"
REASONERS = ("miniworld:reasoner-small", "miniworld:reasoner-large")
VOTES = (1, 3, 5, 9)
BASELINE = "greedy, k = 1"
STAGES = "## Stages\n"  # the full report's last section


class Knob(BaseModel):
    """One evaluated configuration: its name and the `evals.run` flags that make it."""

    model_config = ConfigDict(frozen=True)

    name: str
    flags: tuple[str, ...]

    @property
    def folder(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.name).strip("-")


def knobs() -> list[Knob]:
    """k = 1 greedy, the sampled votes, and both captioners fused (greedy)."""
    paper = recipe("paper")
    sampled = ("--temperature", str(paper["reasoner_temperature"]), "--top-p", str(paper.get("reasoner_top_p", 1.0)))
    return [
        Knob(name=BASELINE, flags=("--captioner", CAPTIONER)),
        *(Knob(name=f"T = {sampled[1]}, k = {k}", flags=("--captioner", CAPTIONER, *sampled, "--reasoner-samples", str(k)))
          for k in VOTES),
        Knob(name="both captioners, greedy, k = 1", flags=("--captioner", f"{CAPTIONER},{SECOND_CAPTIONER}")),
    ]


def evaluate(knob: Knob, out: Path, items: int, seed: int) -> float:
    """Run one configuration's eval afresh into `out/<folder>`; the wall time in seconds."""
    shutil.rmtree(out / knob.folder, ignore_errors=True)  # a resumed run would time nothing
    argv = [
        *knob.flags, *(f for r in REASONERS for f in ("--reasoner", r)), "--benchmark", "miniworld",
        "--limit", str(items), "--prompt", "paper-train", "--mode", "decoupled", "--max-new-tokens", "64",
        "--caption-max-new-tokens", "64", "--batch-size", "32", "--concurrency", "64", "--seed", str(seed),
        "--cache", str(out / "captions.sqlite"), "--output-dir", str(out / knob.folder), "--no-progress",
        "--show", "0",
    ]
    started = time.perf_counter()
    if run_evals(argv) != 0:
        raise RuntimeError(f"evals.run failed for {knob.name}: {' '.join(argv)}")
    return time.perf_counter() - started


def table(out: Path, walls: dict[str, float], *, items: int, seed: int) -> list[str]:
    """Markdown rows: per reasoner and configuration, against the reasoner's k = 1 greedy run."""
    found: dict[tuple[str, str], tuple[float, float, float, float]] = {}  # (reasoner, knob) -> acc, diff, low, high
    rows = ["| reasoner | configuration | accuracy % [95%] | vs k = 1 greedy (points) [paired 95%] | pass@k % | "
            "reasoner tokens / item (in / out) | wall time vs k = 1 greedy |", "|---" * 7 + "|"]
    runs = {knob.name: _runs(out / knob.folder) for knob in knobs()}
    summaries = {knob.name: json.loads((out / knob.folder / "summary.json").read_text())["runs"] for knob in knobs()}
    for reasoner in REASONERS:
        label = f"{reasoner} [decoupled]"
        base = runs[BASELINE][label]
        for knob in knobs():
            result = summaries[knob.name][label]
            bench = result["benchmarks"]["miniworld"]
            acc = bench["accuracy"]
            c = compare(knob.name, BASELINE, "miniworld", runs[knob.name][label], base, seed=seed)
            found[reasoner, knob.name] = (acc["value"], c.difference, c.low, c.high)
            versus = "—" if knob.name == BASELINE else (
                f"{100 * c.difference:+.1f} [{100 * c.low:+.1f}, {100 * c.high:+.1f}]")
            votes = bench.get("votes")
            passed = f"{100 * (votes['pass_at_k'] if votes else acc)['value']:.1f}"  # one sample: pass@1 = accuracy
            tokens = result["tokens"]
            rows.append(
                f"| {reasoner.split(':')[1]} | {knob.name} | {100 * acc['value']:.1f} [{100 * acc['low']:.1f}, "
                f"{100 * acc['high']:.1f}] | {versus} | {passed} | "
                f"{tokens['reasoner_input']:.0f} / {tokens['reasoner_output']:.0f} | "
                f"{walls[knob.name] / walls[BASELINE]:.2f}× |"
            )
    return [
        "## What each knob buys: votes and two captioners",
        "",
        f"_Generated by `python -m training.miniworld.knobs --items {items} --seed {seed}`; do not edit by hand._",
        "",
        f"The shipped models on the first {items} held-out items (`evals.run`, prompt `paper-train`, decoupled, captions "
        f"of `{CAPTIONER}` unless said). Votes sample the reasoner at the paper recipe's reasoner temperature and put "
        "the k answers to a vote (`reasoner_samples=k`; equal answers by the grader are one vote; a tie or no answer "
        "is wrong); pass@k counts an item right when any sample is. `both captioners` reads the descriptions of "
        f"`{CAPTIONER}` and `{SECOND_CAPTIONER}` one after the other (a captioner list). Intervals: Wilson for "
        "accuracy, paired bootstrap on the same items against the reasoner's k = 1 greedy run. Tokens sum all k "
        "calls; wall time is each configuration's whole `evals.run` (both reasoners, captions read from the cache) "
        "over the greedy one's, on a 2-core machine shared with other processes (read those ratios as rough).",
        "",
        *rows,
        "",
        *_findings(found),
    ]


def _findings(found: dict[tuple[str, str], tuple[float, float, float, float]]) -> list[str]:
    """One generated sentence per reasoner: what sampling, votes and the second captioner did to it."""
    names = [knob.name for knob in knobs()]
    sampled, most, fused = names[1], names[-2], names[-1]

    def diff(reasoner: str, name: str) -> str:
        _, d, low, high = found[reasoner, name]
        verdict = "within the interval of no change" if low <= 0 <= high else ("a gain" if d > 0 else "a loss")
        return f"{100 * d:+.1f} points [{100 * low:+.1f}, {100 * high:+.1f}], {verdict}"

    return [
        f"- `{r.split(':')[1]}` ({100 * found[r, BASELINE][0]:.1f}% greedy): sampling one answer ({sampled}) "
        f"{diff(r, sampled)}; the vote of {most.rsplit('= ', 1)[1]} samples {diff(r, most)}; both captioners "
        f"{diff(r, fused)}."
        for r in REASONERS
    ] + ["", "The reasoners were trained (SFT) on prompts that hold one description: two labelled descriptions "
         "are a prompt they never saw."]


def _runs(folder: Path) -> dict[str, dict[str, bool | None]]:
    """run label → sample id → correct (None for an error)."""
    runs: dict[str, dict[str, bool | None]] = {}
    for record in read_records(folder / SAMPLES_FILE).values():
        runs.setdefault(record.run, {})[record.id] = None if record.error is not None else record.correct
    return runs


def write_section(doc: Path, lines: Sequence[str]) -> None:
    """Put `lines` between the markers in `doc`, replacing what was there; when absent, before `STAGES`
    (where the full report keeps it), else at the end."""
    block = "\n".join([KNOBS_START, *lines, KNOBS_END])
    text = doc.read_text() if doc.is_file() else ""
    if KNOBS_START in text and KNOBS_END in text:
        head, _, rest = text.partition(KNOBS_START)
        text = head + block + rest.partition(KNOBS_END)[2]
    elif STAGES in text:
        head, _, rest = text.partition(STAGES)
        text = head + block + "\n\n" + STAGES + rest
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text)


def kept_section(doc: Path) -> list[str]:
    """The section as `doc` holds it now (markers included), for a generator that rewrites the page; [] if none."""
    text = doc.read_text() if doc.is_file() else ""
    if KNOBS_START not in text or KNOBS_END not in text:
        return []
    inner = text.partition(KNOBS_START)[2].partition(KNOBS_END)[0]
    return [KNOBS_START, *inner.strip("\n").split("\n"), KNOBS_END, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.miniworld.knobs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200, help="held-out miniworld items (default 200)")
    parser.add_argument("--out", type=Path, default=Path("runs/miniworld-knobs"))
    parser.add_argument("--doc", type=Path, default=Path("docs/miniworld.md"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    fused = knobs()[-1]
    evaluate(fused.model_copy(update={"name": "caption cache warm-up"}), args.out, args.items, args.seed)
    walls = {knob.name: evaluate(knob, args.out, args.items, args.seed) for knob in knobs()}
    (args.out / "walls.json").write_text(json.dumps(walls, indent=1))
    write_section(args.doc, table(args.out, walls, items=args.items, seed=args.seed))
    print(f"wrote the knobs section of {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
