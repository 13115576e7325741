"""Reports of a run folder: `summary.json`, `report.md` and `accuracy.png`, all from `samples.jsonl`.

Rows are runs (reasoner + mode), columns benchmarks with their headline sub-metrics; cells are
accuracy in % over all samples with a 95% interval and the sample count. Beside it, each sample's
outcome is counted: correct, wrong, truncated (cut off by the token limit) or error (the backend
failed: no answer to grade, never folded silently into "wrong"). With a judge, its verdicts are set
against the rules'. Every pair of runs is compared on the samples both completed, saying how many
were dropped, with the smallest difference the comparison could detect. Where a benchmark repeats
one problem (`Benchmark.cluster_by`), intervals and paired tests resample whole problems, and the
report says so. Latencies vary between machines and re-runs, so they live apart, under `timing`.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from evals.attribution import attribute, markdown_section, read_judged
from evals.html_report import HTML_FILE, write_html
from evals.metrics import Comparison, Score, Status, accuracy, cluster_of, compare, status
from evals.store import SampleRecord, check_one_configuration
from evals.tasks import get_benchmark
from evals.votes import VoteScores, vote_scores, votes_table

SUMMARY_FILE, REPORT_FILE, PLOT_FILE = "summary.json", "report.md", "accuracy.png"


def record_status(record: SampleRecord) -> Status:
    """The outcome of one record (see `evals.metrics.status`)."""
    return status(correct=record.correct, error=record.error is not None, truncated=record.truncated)


class JudgeAgreement(BaseModel):
    """The LLM judge against the rules on the outputs it read: where their verdicts differ."""

    judged: int
    judge_errors: int
    disagreements: int
    disagreeing_ids: list[str]
    changed: int  # samples decided by the judge (the rules found no answer) with another verdict than the rules'


class BenchmarkResult(BaseModel):
    """One run on one benchmark. `accuracy` counts every sample (an error or truncation is not correct);
    `accuracy_completed` leaves out the errors. The outcome counts add up to `samples`. `cluster_by`: the
    metadata key whose clusters the intervals resample (None: independent items, Wilson intervals)."""

    accuracy: Score
    accuracy_completed: Score
    samples: int
    correct: int
    wrong: int
    truncated: int
    errors: int
    truncated_rate: float
    error_rate: float
    metrics: dict[str, Score]
    headline: list[str]
    cluster_by: str | None
    judge: JudgeAgreement | None = None
    votes: VoteScores | None = None  # k reasoner samples per question: vote@k, pass@k (`evals.votes`)


class TokenCost(BaseModel):
    """Mean tokens per sample. Captioner tokens of decoupled runs are paid once for all reasoners."""

    samples: int
    reasoner_input: float
    reasoner_output: float
    captioner_input: float
    captioner_output: float


class RunSummary(BaseModel):
    mode: str
    captioner: str | None
    reasoner: str | None
    benchmarks: dict[str, BenchmarkResult]
    tokens: TokenCost


class Summary(BaseModel):
    config: dict[str, Any] | None
    runs: dict[str, RunSummary]
    comparisons: list[Comparison]
    timing: dict[str, dict[str, float]]


def summarize(
    records: list[SampleRecord], *, config: dict[str, Any] | None = None, seed: int = 0, order: list[str] | None = None
) -> Summary:
    """Per-run, per-benchmark results, paired comparisons and timing; runs in `order` (else first seen)."""
    check_one_configuration(records)
    by_run: dict[str, list[SampleRecord]] = {label: [] for label in order or []}
    for record in records:
        by_run.setdefault(record.run, []).append(record)
    by_run = {label: rs for label, rs in by_run.items() if rs}
    runs = {label: _run_summary(rs, seed) for label, rs in by_run.items()}
    comparisons = []
    for a, b in itertools.combinations(by_run, 2):
        for bench in sorted(runs[a].benchmarks.keys() & runs[b].benchmarks.keys()):
            ra, rb = ([r for r in by_run[label] if r.benchmark == bench] for label in (a, b))
            ca, cb = ({r.id: None if r.error is not None else r.correct for r in rs} for rs in (ra, rb))
            key = runs[a].benchmarks[bench].cluster_by
            ids = {r.id: cluster_of(r.outcome(), key) for r in ra + rb} if key else None
            comparisons.append(compare(a, b, bench, ca, cb, cluster_by=key, cluster_ids=ids, seed=seed))
    timing = {
        label: {"latency_s_mean": sum(r.latency_s for r in rs) / len(rs), "latency_s_total": sum(r.latency_s for r in rs)}
        for label, rs in by_run.items()
    }
    return Summary(config=config, runs=runs, comparisons=comparisons, timing=timing)


def _run_summary(records: list[SampleRecord], seed: int) -> RunSummary:
    by_bench: dict[str, list[SampleRecord]] = defaultdict(list)
    for record in records:
        by_bench[record.benchmark].append(record)
    benchmarks = {}
    for label, rs in sorted(by_bench.items()):
        bench = get_benchmark(label.split(":")[0])
        outcomes = [r.outcome() for r in rs]
        metrics = bench.metrics(outcomes, seed=seed) if bench.metrics else {}
        counts = Counter(record_status(r) for r in rs)
        completed = [r.outcome() for r in rs if r.error is None]
        benchmarks[label] = BenchmarkResult(
            accuracy=accuracy(outcomes, cluster_by=bench.cluster_by, seed=seed),
            accuracy_completed=accuracy(completed, cluster_by=bench.cluster_by, seed=seed), samples=len(rs),
            correct=counts["correct"], wrong=counts["wrong"], truncated=counts["truncated"], errors=counts["error"],
            truncated_rate=counts["truncated"] / len(rs), error_rate=counts["error"] / len(rs), metrics=metrics,
            headline=list(bench.headline), cluster_by=bench.cluster_by, judge=_judge_agreement(rs),
            votes=vote_scores(rs),
        )
    first = records[0]
    return RunSummary(
        mode=first.mode, captioner=first.captioner, reasoner=first.reasoner, benchmarks=benchmarks,
        tokens=_tokens(records),
    )


def _judge_agreement(records: list[SampleRecord]) -> JudgeAgreement | None:
    verdicts = [(r, r.judge) for r in records if r.judge is not None]
    if not verdicts:
        return None
    disagreeing = sorted(r.id for r, v in verdicts if v.disagrees)
    return JudgeAgreement(
        judged=len(verdicts), judge_errors=sum(v.error is not None for _, v in verdicts),
        disagreements=len(disagreeing), disagreeing_ids=disagreeing,
        changed=sum(bool(r.method and r.method.startswith("judge:")) and r.correct != v.rule_correct for r, v in verdicts),
    )


def _tokens(records: list[SampleRecord]) -> TokenCost:
    def mean(nodes: tuple[str, ...], field: str, perception: bool) -> float:
        total = 0
        for r in records:
            usage = r.usage + (r.perception_usage if perception else [])
            total += sum(u.get(field, 0) for u in usage if u.get("node") in nodes)
        return total / len(records)

    return TokenCost(
        samples=len(records),
        reasoner_input=mean(("reason",), "input_tokens", False),
        reasoner_output=mean(("reason",), "output_tokens", False),
        captioner_input=mean(("caption", "tentative"), "input_tokens", True),
        captioner_output=mean(("caption", "tentative"), "output_tokens", True),
    )


# --------------------------------------------------------------------------- Markdown


def _cell(score: Score) -> str:
    return f"{100 * score.value:.1f} [{100 * score.low:.1f}, {100 * score.high:.1f}] (n={score.n})"


def markdown(summary: Summary) -> str:
    benches = sorted({b for run in summary.runs.values() for b in run.benchmarks})
    headline = {b: next(run.benchmarks[b].headline for run in summary.runs.values() if b in run.benchmarks) for b in benches}
    columns = [(b, m) for b in benches for m in (None, *headline[b])]
    header = ["run", *[b if m is None else f"{b} {m}" for b, m in columns], "reasoner tokens/sample (in/out)",
              "captioner tokens/sample (in/out)"]
    lines = ["# Eval report", ""]
    if summary.config and "captioner" in summary.config:
        c = summary.config
        lines += [f"Captioner `{c['captioner']}` · prompt preset `{c['prompt_preset']}` · "
                  f"re-caption rounds {c['max_recaption_rounds']} · seed {c['seed']}", ""]
    lines += ["## Accuracy (%, 95% interval, sample count)", "", _row(header), _row(["---"] * len(header))]
    for label, run in summary.runs.items():
        cells = [label]
        for bench, metric in columns:
            result = run.benchmarks.get(bench)
            if result is None:
                cells.append("—")
                continue
            text = _cell(result.accuracy if metric is None else result.metrics[metric])
            if metric is None and result.errors:
                text += f" ⚠ {result.errors} errors"
            cells.append(text)
        t = run.tokens
        cells += [f"{t.reasoner_input:.0f} / {t.reasoner_output:.0f}", f"{t.captioner_input:.0f} / {t.captioner_output:.0f}"]
        lines.append(_row(cells))
    lines += ["", "Accuracy counts every sample; errors and truncated outputs are not correct, and are counted apart "
              "below. Decoupled runs share one captioning pass: its tokens are paid once."]
    lines += _clustering_note(summary, benches)
    lines += _outcome_table(summary)
    lines += votes_table(summary.runs)
    lines += _judge_table(summary)
    detail = [b for b in benches if any(run.benchmarks[b].metrics for run in summary.runs.values() if b in run.benchmarks)]
    if detail:
        lines += ["", "## Sub-metrics"]
    for bench in detail:  # one row per sub-metric (MMMU has 36), one column per run
        runs = {label: run.benchmarks[bench].metrics for label, run in summary.runs.items() if bench in run.benchmarks}
        names = sorted({m for metrics in runs.values() for m in metrics})
        lines += ["", f"### {bench}", "", _row(["metric", *runs]), _row(["---"] * (len(runs) + 1))]
        for name in names:
            lines.append(_row([name, *[_cell(metrics[name]) if name in metrics else "—" for metrics in runs.values()]]))
    if summary.comparisons:
        lines += ["", "## Paired comparisons (A − B on the samples both completed)", "",
                  _row(["benchmark", "A", "B", "n", "dropped", "A %", "B %", "A − B [95% paired bootstrap]",
                        "only A right", "only B right", "p", "test", "MDD"]),
                  _row(["---"] * 13)]
        for c in summary.comparisons:
            lines.append(_row([
                c.benchmark, c.a, c.b, str(c.n), str(c.dropped), f"{100 * c.accuracy_a:.1f}", f"{100 * c.accuracy_b:.1f}",
                f"{100 * c.difference:+.1f} [{100 * c.low:+.1f}, {100 * c.high:+.1f}]", str(c.only_a_correct),
                str(c.only_b_correct), f"{c.p_value:.3g}", c.test, f"{100 * c.mdd:.1f}",
            ]))
        lines += ["", "dropped: samples left out of a comparison (errored in either run, or evaluated by one only). "
                  "MDD: the smallest difference (points) the comparison could detect at its size, with 80% power at "
                  "alpha 0.05: (z₀.₉₇₅ + z₀.₈₀) × the (clustered) standard error of A − B, never below the bound "
                  "a difference's own discordance sets. A difference smaller than the MDD that is not significant "
                  "is no evidence of equality."]
    return "\n".join(lines) + "\n"


def _clustering_note(summary: Summary, benches: list[str]) -> list[str]:
    """Per benchmark: whether its intervals and paired tests treat items as independent or resample problems."""
    lines = ["", "## Statistics", ""]
    for bench in benches:
        result = next(run.benchmarks[bench] for run in summary.runs.values() if bench in run.benchmarks)
        if result.cluster_by is None:
            lines.append(f"- {bench}: independent items: Wilson intervals, paired bootstrap over samples, "
                         "McNemar's exact test.")
            continue
        lines.append(
            f"- {bench}: items repeat a problem, so intervals and paired comparisons are clustered by "
            f"`{result.cluster_by}` ({result.accuracy.clusters} clusters over {result.samples} samples): a cluster "
            "bootstrap resamples whole clusters, and the paired test is an exact sign-flip test over the clusters' "
            "summed differences (McNemar's assumes independent pairs)."
        )
    return lines


def _outcome_table(summary: Summary) -> list[str]:
    lines = ["", "## Outcomes (errors: the backend failed, no answer was graded; truncated: cut off by the token limit)",
             "", _row(["run", "benchmark", "samples", "correct", "wrong", "truncated", "errors", "accuracy % (all)",
                       "accuracy % (completed)"]), _row(["---"] * 9)]
    for label, run in summary.runs.items():
        for bench, r in run.benchmarks.items():
            lines.append(_row([
                label, bench, str(r.samples), str(r.correct), str(r.wrong), f"{r.truncated} ({100 * r.truncated_rate:.1f}%)",
                f"{r.errors} ({100 * r.error_rate:.1f}%)", f"{100 * r.accuracy.value:.1f}",
                f"{100 * r.accuracy_completed.value:.1f}" if r.accuracy_completed.n else "—",
            ]))
    return lines


def _judge_table(summary: Summary) -> list[str]:
    from evals.judge import choose_prompt  # here: the judge table is this module's only use of it

    judged = [(label, bench, r.judge) for label, run in summary.runs.items() for bench, r in run.benchmarks.items() if r.judge]
    if not judged:
        return []
    lines = ["", "## Judge vs rules (verdicts on the same outputs)", "",
             _row(["run", "benchmark", "judged", "judge errors", "disagreements", "decided by the judge, changed",
                   "disagreeing samples"]), _row(["---"] * 7)]
    for label, bench, j in judged:
        ids = ", ".join(j.disagreeing_ids[:20]) + (f", … ({len(j.disagreeing_ids) - 20} more)" if len(j.disagreeing_ids) > 20 else "")
        lines.append(_row([label, bench, str(j.judged), str(j.judge_errors), str(j.disagreements), str(j.changed), ids or "—"]))
    config = summary.config or {}
    if config.get("judge"):  # runs before --judge-prompt had the generic prompt only
        names = dict.fromkeys(b["name"] for b in config.get("benchmarks", []))
        lines += ["", f"Judge `{config['judge']}`, prompts:"]
        lines += [f"- {choose_prompt(name, config.get('judge_prompt', 'generic')).describe()}" for name in names]
    return lines


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


# --------------------------------------------------------------------------- plot


def plot(summary: Summary, path: Path) -> None:
    """Grouped bars: accuracy per benchmark, one bar per run, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = sorted({b for run in summary.runs.values() for b in run.benchmarks})
    labels = list(summary.runs)
    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(benches) * max(1, len(labels)) ** 0.5), 4.0))
    for i, label in enumerate(labels):
        results = summary.runs[label].benchmarks
        xs = [j + (i - (len(labels) - 1) / 2) * width for j, b in enumerate(benches) if b in results]
        scores = [results[b].accuracy for b in benches if b in results]
        values = [100 * s.value for s in scores]
        errors = [[max(0.0, 100 * (s.value - s.low)) for s in scores], [max(0.0, 100 * (s.high - s.value)) for s in scores]]
        ax.bar(xs, values, width, yerr=errors, capsize=3, label=label)
    ax.set_xticks(range(len(benches)), benches)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Accuracy per run (95% intervals)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_reports(
    records: list[SampleRecord], folder: Path, *, config: dict[str, Any] | None, seed: int = 0,
    order: list[str] | None = None,
) -> Summary:
    """Write `summary.json`, `report.md`, `report.html` and `accuracy.png` into `folder`; return the summary."""
    summary = summarize(records, config=config, seed=seed, order=order)
    folder = Path(folder)
    (folder / SUMMARY_FILE).write_text(json.dumps(summary.model_dump(mode="json"), indent=2) + "\n")
    attribution = attribute(records, judged=read_judged(folder))  # where the errors come from
    (folder / REPORT_FILE).write_text(markdown(summary) + markdown_section(attribution))
    write_html(records, folder / HTML_FILE, attribution=attribution, config=config)
    if summary.runs:
        plot(summary, folder / PLOT_FILE)
    return summary
