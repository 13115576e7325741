"""The miniature world's results: the three claims from the merged eval report, where the errors come from
(perception or reasoning), the docs page, the shipped weights.

Run labels follow `evals.run` with two captioners: `reasoner-small [decoupled] (captioner)` is the
small reasoner reading the VPO captioner's captions, `(captioner-sft)` the SFT captioner's.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from rapid_agent.miniworld import MANIFEST, MODELS, WEIGHTS_DIR
from training.miniworld.knobs import kept_section

VPO_MARGIN = 0.10  # the claim: VPO beats the SFT captioner by at least 10 points with the small reasoner
RUNS = {
    "small_vpo": "reasoner-small [decoupled] (captioner)",
    "small_sft": "reasoner-small [decoupled] (captioner-sft)",
    "large_vpo": "reasoner-large [decoupled] (captioner)",
    "large_sft": "reasoner-large [decoupled] (captioner-sft)",
    "blind_small": "reasoner-small [blind]",
    "blind_large": "reasoner-large [blind]",
    "direct_vpo": "captioner [direct]",
    "direct_sft": "captioner-sft [direct]",
    # claim 5 and the leak guard (the full run; the quick run leaves them out)
    "other_vpo": "reasoner-other [decoupled] (captioner)",
    "other_sft": "reasoner-other [decoupled] (captioner-sft)",
    "other_pool": "reasoner-other [decoupled] (captioner-pool)",
    "small_pool": "reasoner-small [decoupled] (captioner-pool)",
    "large_pool": "reasoner-large [decoupled] (captioner-pool)",
    "small_guarded": "reasoner-small [decoupled] (captioner-guarded)",
    "blind_other": "reasoner-other [blind]",
}
CAPTIONERS = ("captioner-sft", "captioner", "captioner-guarded", "captioner-pool")
CURVES = {
    "vpo/reward_mean": "reward (reasoner accuracy, mean)",
    "vpo/caption_length": "caption length (tokens)",
    "vpo/frac_zero_std_groups": "zero-variance groups (fraction)",
    "completions/clipped_ratio": "captions cut at the token limit (fraction)",
}


def _difference(summary: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    """A − B (paired bootstrap interval, McNemar p) from the summary's comparisons, in either order."""
    for c in summary["comparisons"]:
        if (c["a"], c["b"]) == (a, b):
            return {"a": a, "b": b, "difference": c["difference"], "low": c["low"], "high": c["high"],
                    "p_value": c["p_value"], "n": c["n"], "accuracy_a": c["accuracy_a"], "accuracy_b": c["accuracy_b"]}
        if (c["a"], c["b"]) == (b, a):
            return {"a": a, "b": b, "difference": -c["difference"], "low": -c["high"], "high": -c["low"],
                    "p_value": c["p_value"], "n": c["n"], "accuracy_a": c["accuracy_b"], "accuracy_b": c["accuracy_a"]}
    raise KeyError(f"no comparison of {a!r} and {b!r} in the eval summary")


def _name(label: str) -> str:
    """A run label with model specs reduced to names (`hf:runs/x/models/reasoner-small`, `miniworld:reasoner-small`
    → `reasoner-small`)."""
    return re.sub(r"hf:\S*/|miniworld:", "", label)


def claims(summary_path: Path) -> dict[str, Any]:
    """The three claims, each with its paired differences and whether it holds."""
    summary = json.loads(Path(summary_path).read_text())
    summary["runs"] = {_name(label): run for label, run in summary["runs"].items()}
    summary["comparisons"] = [c | {"a": _name(c["a"]), "b": _name(c["b"])} for c in summary["comparisons"]]
    perception = _difference(summary, RUNS["small_vpo"], RUNS["blind_small"])
    vpo = _difference(summary, RUNS["small_vpo"], RUNS["small_sft"])
    scaling = _difference(summary, RUNS["large_vpo"], RUNS["small_vpo"])
    transfer = _difference(summary, RUNS["large_vpo"], RUNS["large_sft"])
    found = {
        "perception": {**perception, "holds": perception["low"] > 0.2},
        "vpo": {**vpo, "holds": vpo["difference"] >= VPO_MARGIN and vpo["low"] > 0},
        "scaling": {**scaling, "holds": scaling["low"] > 0},
        "transfer": {**transfer, "holds": transfer["low"] > 0},
        "accuracy": {key: _accuracy(summary, label) for key, label in RUNS.items() if label in summary["runs"]},
        "captions": caption_stats(Path(summary_path).parent),
        "attribution": attribution(Path(summary_path).parent),
    }
    if RUNS["other_pool"] in summary["runs"]:  # claim 5: does a pool-aligned captioner transfer better?
        pool = _difference(summary, RUNS["other_pool"], RUNS["other_vpo"])
        found["pool"] = {**pool, "holds": pool["low"] > 0,
                         "single_vs_sft": _difference(summary, RUNS["other_vpo"], RUNS["other_sft"]),
                         "pool_vs_sft": _difference(summary, RUNS["other_pool"], RUNS["other_sft"]),
                         "small": _difference(summary, RUNS["small_pool"], RUNS["small_vpo"]),
                         "large": _difference(summary, RUNS["large_pool"], RUNS["large_vpo"]),
                         "same_captions": _same_captions(Path(summary_path).parent, "captioner", "captioner-pool")}
    if RUNS["small_guarded"] in summary["runs"]:
        found["guard"] = _difference(summary, RUNS["small_guarded"], RUNS["small_vpo"])
    return found


def _same_captions(evals: Path, a: str, b: str) -> float:
    """The share of held-out items on which captioners `a` and `b` wrote the same caption."""
    def captions(name: str) -> dict[str, str]:
        rows = map(json.loads, (evals / name / "samples.jsonl").read_text().splitlines())
        return {r["id"]: r["captions"][0] for r in rows if _name(r["run"]) == "reasoner-small [decoupled]" and r.get("captions")}

    first, second = captions(a), captions(b)
    shared = first.keys() & second.keys()
    return sum(first[i] == second[i] for i in shared) / max(1, len(shared))


def caption_stats(evals: Path) -> dict[str, dict[str, float]]:
    """Per captioner, over its held-out captions: the share that states an answer (`training.guards.find_leak`)
    and the mean number of bars whose value it gives."""
    from training.guards import find_leak

    stats = {}
    for name in CAPTIONERS:
        path = evals / name / "samples.jsonl"
        if not path.is_file():
            continue
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        records = [r for r in rows if _name(r["run"]) == "reasoner-small [decoupled]" and r.get("captions")]
        direct = [r for r in rows if _name(r["run"]).endswith("[direct]") and r.get("output")]
        if records:
            leaks = [find_leak(r["captions"][0], r.get("options")) is not None for r in records]
            bars = [len(set(re.findall(r"bar ([A-D]): \d+", r["captions"][0]))) for r in records]
            stats[name] = {"leak_rate": sum(leaks) / len(leaks), "bars": sum(bars) / len(bars), "n": len(records),
                           # the check's recall on this captioner's own answers (asked the question directly)
                           "direct_flagged": sum(find_leak(r["output"], r.get("options")) is not None for r in direct)
                           / len(direct) if direct else None}
    return stats


def attribution(evals: Path) -> dict[str, Any]:
    """Each decoupled run's wrong answers split exactly into perception and reasoning (the world knows what each
    question needs: `evals.attribution`); `moves`: each item's outcome for the small reasoner with SFT, then VPO
    captions (`perception/reasoning`: a perception error with SFT captions is a reasoning error with VPO's);
    `families`: the question families of its reasoning errors with VPO captions; `general`: (exact cause, the
    general rule's cause) pairs over the same errors, the general rule alone reading other runs' answers."""
    from evals.attribution import attribute
    from evals.store import SAMPLES_FILE, read_records

    records = [r.model_copy(update={"run": _name(r.run)}) for r in read_records(evals / SAMPLES_FILE).values()]
    exact = attribute(records)
    cause = {(a.run, a.id): a.cause for a in exact.samples}
    pairs = Counter(f"{cause[a.run, a.id]}/{a.cause}" for a in attribute(records, exact=False).samples)
    sft, vpo = RUNS["small_sft"], RUNS["small_vpo"]
    ids = [r.id for r in records if r.run == vpo]
    family = {r.id: r.metadata.get("family") for r in records if r.run == vpo}
    moves = Counter(f"{cause.get((sft, i), 'correct')}/{cause.get((vpo, i), 'correct')}" for i in ids)
    families = Counter(family[i] for i in ids if cause.get((vpo, i)) == "reasoning")
    return {"runs": {r.run: r.model_dump(include={"wrong", "perception", "reasoning", "unknown"}) for r in exact.rows},
            "moves": dict(sorted(moves.items())), "families": dict(families.most_common()),
            "general": dict(sorted(pairs.items()))}


def _accuracy(summary: dict[str, Any], label: str) -> dict[str, Any]:
    bench = summary["runs"][label]["benchmarks"]["miniworld"]
    return {"overall": bench["accuracy"], "families": bench["metrics"]}


# ----------------------------------------------------------------------------------------- docs


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _claim_line(name: str, c: dict[str, Any]) -> str:
    verdict = "**holds**" if c["holds"] else "**not reached**"
    return (f"| {name} | `{c['a']}` − `{c['b']}` | {_pct(c['accuracy_a'])} − {_pct(c['accuracy_b'])} | "
            f"{100 * c['difference']:+.1f} [{100 * c['low']:+.1f}, {100 * c['high']:+.1f}] | {c['p_value']:.2g} | "
            f"{c['n']} | {verdict} |")


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """VPO training curves (reward, reasoner accuracy, caption length, zero-variance groups)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [h for h in history if "vpo/reward_mean" in h]
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.2))
    for ax, (key, title) in zip(axes, CURVES.items(), strict=True):
        steps = [h["step"] for h in rows if key in h]
        values = [h[key] for h in rows if key in h]
        ax.plot(steps, values, alpha=0.35, color="tab:blue")
        window = max(1, len(values) // 15)
        smooth = [sum(values[max(0, i - window + 1): i + 1]) / len(values[max(0, i - window + 1): i + 1])
                  for i in range(len(values))]
        ax.plot(steps, smooth, color="tab:blue")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("VPO step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _family_table(found: dict[str, Any]) -> list[str]:
    acc = found["accuracy"]
    families = sorted({f for run in acc.values() for f in run["families"]})
    lines = ["| run | overall | " + " | ".join(f.removeprefix("family=") for f in families) + " |",
             "|---" * (len(families) + 2) + "|"]
    for key, label in RUNS.items():
        if key not in acc:
            continue
        cells = [f"{_pct(acc[key]['overall']['value'])} [{_pct(acc[key]['overall']['low'])}, {_pct(acc[key]['overall']['high'])}]"]
        cells += [_pct(acc[key]["families"][f]["value"]) if f in acc[key]["families"] else "—" for f in families]
        lines.append(f"| `{label}` | " + " | ".join(cells) + " |")
    return lines


def _examples(out: Path, count: int = 5) -> list[str]:
    """Captions of the first held-out items (one per family) before and after VPO, with the small reasoner's answers."""
    def records(folder: str) -> dict[str, dict]:
        path = out / "evals" / "all" / folder / "samples.jsonl"
        found = {}
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if _name(r["run"]) == "reasoner-small [decoupled]":
                found[r["id"]] = r
        return found

    vpo, sft = records("captioner"), records("captioner-sft")
    lines = []
    for key in sorted(vpo.keys() & sft.keys())[:count]:
        a, b = sft[key], vpo[key]
        lines += [f"- **{a['id']}** — {a.get('question', '')} (gold `{(a.get('gold') or [''])[0]}`)",
                  f"  - SFT caption: `{_caption(a)}` → `{_short(a.get('output'))}`",
                  f"  - VPO caption: `{_caption(b)}` → `{_short(b.get('output'))}`"]
    return lines


def _caption(record: dict) -> str:
    captions = record.get("captions") or []
    return captions[0] if captions else ""


def _short(text: Any) -> str:
    return " ".join(str(text or "").split())[:120]


def _phrase_sentence(config: dict[str, Any]) -> str:
    """Which tokenizers hold each `bar A: ` as one token (the captioner's always; a reasoner's by its config)."""
    reasoners = [name for name, key in (("small", "small_size"), ("larger", "large_size"))
                 if config[key].get("phrase_tokens")]
    holders = "The captioner's tokenizer" + "".join(f" and the {name} reasoner's" for name in reasoners)
    return (f"{holders} {'hold' if reasoners else 'holds'} each `bar A: ` as one token, so a value sits next to a "
            "token that names its bar: the tiny models learn to read a bar, and to name the bar of a value, several "
            "times sooner than with the phrase split in four tokens.")


def write_docs(out: Path, docs: Path, found: dict[str, Any], result: dict[str, Any], *, command: list[str],
               quick: bool) -> None:
    """Write the report page (and its plots beside it) and `OUT/summary.txt`."""
    docs.parent.mkdir(parents=True, exist_ok=True)
    assets = docs.parent / "miniworld"
    assets.mkdir(exist_ok=True)
    history = _history(out, "captioner")
    if history:  # a captioner taken as shipped keeps the curves of the run that trained it
        plot_curves(history, assets / "vpo_curves.png")
    shutil.copy2(out / "evals" / "all" / "accuracy.png", assets / "accuracy.png")
    config = json.loads((out / "config.json").read_text())
    params = {name: json.loads((out / "models" / name / "training_log.json").read_text()).get("params")
              for name in MODELS if (out / "models" / name / "training_log.json").is_file()}
    times = json.loads((out / "stages.json").read_text())
    stages = "\n".join(f"| {name} | {t['seconds'] / 60:.1f} | {t['device']} |" for name, t in times.items())
    wall = json.loads((out / "wall.json").read_text())
    total = wall["seconds"] if wall["from_scratch"] else sum(t["seconds"] for t in times.values())
    shipped = f", shipped {' and '.join(wall['shipped'])}" if wall.get("shipped") else ""
    total_row = (f"| whole run (wall clock, {wall['threads']} threads, --jobs {wall['jobs']}{shipped}) | {total / 60:.1f} | |"
                 if wall["from_scratch"] else f"| sum of the stages (resumed run: no single wall clock) | {total / 60:.1f} | |")
    lines = [
        "# The miniature world: RAPID's claims, reproduced by tiny models trained on a CPU",
        "",
        f"_Generated by `{' '.join(command)}`{' (quick mode)' if quick else ''}; do not edit by hand._",
        "",
        "Bar charts drawn by code (`rapid_agent.miniworld`), five question families, held-out scenes never seen in "
        "training. A tiny Qwen2.5-VL captioner is trained (TRL `SFTTrainer`) to describe charts *without* regard to the "
        f"question — two bars at random, every bar only {100 * config['captioner'][-1]['full_probability']:.0f}% of the time, after a first phase "
        "that teaches it to read — then VPO "
        "(`python -m training.vpo --config training/recipes/miniworld.yaml`, GRPO, the small reasoner frozen as the reward) aligns it with "
        "the reasoner. Two Qwen2 reasoners are trained with `SFTTrainer` on (true description + question → work + "
        "`\\boxed{}`): a small one that writes sums on one line, a larger one that writes partial sums. "
        f"{_phrase_sentence(config)}",
        "",
        *([f"Taken from the package as they are, not trained by this run: {', '.join(f'`miniworld:{n}`' for n in config['shipped'])}.",
           ""] if config.get("shipped") else []),
        f"Parameters: captioner {params.get('captioner-sft'):,}, small reasoner {params.get('reasoner-small'):,}, "
        f"large reasoner {params.get('reasoner-large'):,}. Evaluated on {config['eval_items']} held-out items with "
        "`python -m evals.run` (benchmark `miniworld`, prompt `paper-train`); intervals are 95% (Wilson for accuracy, "
        "paired bootstrap for differences), p-values McNemar's exact test.",
        "",
        "## The claims",
        "",
        "| claim | A − B | accuracy A − B (%) | difference [95% CI] (points) | McNemar p | n | verdict |",
        "|---|---|---|---|---|---|---|",
        _claim_line("1. perception matters (vs blind)", found["perception"]),
        _claim_line(f"2. VPO works (≥ +{100 * VPO_MARGIN:.0f} points)", found["vpo"]),
        _claim_line("3. inference-time scaling (larger reasoner)", found["scaling"]),
        _claim_line("3. transfer (VPO captions help the larger reasoner)", found["transfer"]),
        "",
        "## Accuracy per run and question family (%)",
        "",
        *_family_table(found),
        "",
        "`[direct]` rows are the captioner answering alone (the MLLM baseline); `[blind]` rows the reasoner with no caption.",
        "",
        "![accuracy](miniworld/accuracy.png)",
        "",
        "## VPO training curves",
        "",
        "![VPO curves](miniworld/vpo_curves.png)",
        "",
        *_pool_section(found),
        *_guard_section(found, out),
        *_attribution_section(found),
        "## Captions before and after VPO (small reasoner's answer)",
        "",
        *_examples(out),
        "",
        *kept_section(docs),  # training.miniworld.knobs' section (votes, two captioners), as the page holds it
        "## Stages",
        "",
        "| stage | minutes | hardware |",
        "|---|---|---|",
        stages,
        total_row,
        "",
        "The captioner (SFT, then VPO once the small reasoner that rewards it is done) trains in a second process "
        "beside the reasoners (`--jobs 2`, one thread each); the evals then get both threads. Stages are sized in steps and examples, not minutes; a finished stage is "
        "kept, so the command resumes where it stopped, on whatever machine runs it (SFT uses a GPU when there is "
        "one, in fp32; the shipped weights are fp16). `python -m training.miniworld --quick` trains the perception "
        "side (the captioner's SFT and VPO, at a fraction of these steps) against the shipped reasoners; CI runs it "
        "from scratch and asserts the claims on its held-out items (`tests/test_miniworld_quick.py`).",
        "",
        "Reproduce the figures from the shipped weights: `python -m evals.run "
        + " ".join(f"--captioner miniworld:{n}" for n in CAPTIONERS[1::-1] + (CAPTIONERS[2:] if config.get("pool_claim") else ()))
        + " " + " ".join(f"--reasoner miniworld:{n}" for n in ("reasoner-small", "reasoner-large")
                         + (("reasoner-other",) if config.get("pool_claim") else ()))
        + f" --benchmark miniworld --limit {config['eval_items']} --prompt paper-train --max-new-tokens 64 "
        "--caption-max-new-tokens 64 --mode decoupled --mode direct --mode blind`.",
        "",
        "Settings: `" + json.dumps(config) + "`",
        "",
    ]
    docs.write_text("\n".join(lines))
    summary = [f"miniworld: {total / 60:.1f} min; report {docs}"]
    for name in ("perception", "vpo", "scaling", "transfer"):
        c = found[name]
        summary.append(f"  {name:<10} {c['a']} − {c['b']}: {100 * c['difference']:+.1f} points "
                       f"[{100 * c['low']:+.1f}, {100 * c['high']:+.1f}] → {'holds' if c['holds'] else 'NOT REACHED'}")
    (out / "summary.txt").write_text("\n".join(summary) + "\n")


def _history(out: Path, name: str) -> list[dict[str, Any]]:
    path = out / "models" / name / "training_log.json"
    return json.loads(path.read_text()).get("log_history", []) if path.is_file() else []


def _diff_cell(c: dict[str, Any]) -> str:
    return f"{100 * c['difference']:+.1f} [{100 * c['low']:+.1f}, {100 * c['high']:+.1f}] (p {c['p_value']:.2g})"


def _pool_section(found: dict[str, Any]) -> list[str]:
    """Claim 5: the third reasoner (never a reward) reading SFT, single-reasoner VPO and pool VPO captions."""
    if "pool" not in found:
        return []
    c, acc, caps = found["pool"], found["accuracy"], found["captions"]

    def row(key: str, captioner: str, what: str) -> str:
        a = acc[key]["overall"]
        return (f"| {what} (`{captioner}`) | {_pct(a['value'])} [{_pct(a['low'])}, {_pct(a['high'])}] | "
                f"{caps.get(captioner, {}).get('bars', float('nan')):.2f} |")

    verdict = "holds" if c["holds"] else "does not hold"
    return [
        "## Claim 5: do captions aligned to a pool of reasoners transfer better?",
        "",
        "A third reasoner, `reasoner-other` (Llama architecture, the small reasoner's tokenizer, the large one's "
        "written sums), is never used in any VPO reward. `captioner-pool` is trained by VPO from the same SFT "
        "captioner, with the same steps, against the pool of the small and large reasoners (`--reasoner A B`, "
        "every caption read by both, reward their mean); `captioner` against the small reasoner alone.",
        "",
        "| the third reasoner reading captions of | accuracy (%) [95% CI] | bars given per caption |",
        "|---|---|---|",
        row("other_sft", "captioner-sft", "SFT"),
        row("other_vpo", "captioner", "single-reasoner VPO"),
        row("other_pool", "captioner-pool", "pool VPO"),
        "",
        "| paired difference (points) | [95% CI] (McNemar p) |",
        "|---|---|",
        f"| **pool VPO − single VPO, third reasoner (claim 5)** | {_diff_cell(c)} |",
        f"| single VPO − SFT, third reasoner | {_diff_cell(c['single_vs_sft'])} |",
        f"| pool VPO − SFT, third reasoner | {_diff_cell(c['pool_vs_sft'])} |",
        f"| pool VPO − single VPO, small reasoner (a pool member; the single run's own reward) | {_diff_cell(c['small'])} |",
        f"| pool VPO − single VPO, large reasoner (a pool member) | {_diff_cell(c['large'])} |",
        "",
        f"Claim 5 **{verdict}** on these {c['n']} items: the pool's captions {'beat' if c['holds'] else 'do not beat'} the "
        f"single reasoner's for a reasoner neither saw. The two VPO captioners write the same caption on "
        f"{100 * c['same_captions']:.0f}% of the items. How many bar values a caption gives (right or wrong) is what "
        "a reasoner can read: both VPO runs moved the captioner from the SFT habit of naming two bars to naming "
        f"{caps['captioner']['bars']:.2f} and {caps['captioner-pool']['bars']:.2f} of 4.",
        "",
        *([_POOL_WHY, ""] if not c["holds"] and abs(caps["captioner"]["bars"] - caps["captioner-pool"]["bars"]) < 0.25 else []),
    ]


_POOL_WHY = (
    "Why the pool does not help here, as we read it: in this world every reasoner reads the same description format "
    "(`bar A: 7; ...`), so what any of them needs from a caption is the same — every bar the question touches, read "
    "right. The single reasoner's optimum (name every bar) is already every reasoner's, and the pool converges to it "
    "too; a pool can only add where reasoners want different things from a caption (detail, wording, order), which "
    "these reasoners, trained on one format, do not. The test of claim 5 needs reasoners that disagree about good "
    "captions, e.g. ones trained on different description styles."
)


def _guard_section(found: dict[str, Any], out: Path) -> list[str]:
    """The leak guard: how often captions state an answer, before and after VPO, with and without the guard."""
    caps = found.get("captions", {})
    if "captioner-guarded" not in caps:
        return []

    def training_leaks(name: str) -> str:
        rates = [-h["rewards/leak_penalty/mean"] for h in _history(out, name) if "rewards/leak_penalty/mean" in h]
        return f"{100 * sum(rates[:10]) / len(rates[:10]):.1f} → {100 * sum(rates[-10:]) / len(rates[-10:]):.1f}" if rates else "—"

    what = {"captioner-sft": "SFT (before VPO)", "captioner": "VPO, no guard", "captioner-guarded": "VPO, leak guard",
            "captioner-pool": "pool VPO, no guard"}
    rows = [f"| {what[name]} (`{name}`) | {100 * caps[name]['leak_rate']:.1f} | {training_leaks(name)} | "
            f"{_pct(caps[name]['direct_flagged']) if caps[name]['direct_flagged'] is not None else '—'} |"
            for name in CAPTIONERS if name in caps]
    guard = found.get("guard")
    return [
        "## Reward hacking: captions that state the answer",
        "",
        "The SFT captioner was trained to answer directly on a share of its rows (the recipe's `direct_fraction`), "
        "so a caption may state an answer instead of describing the chart. `training.guards.find_leak` flags a caption "
        "that states a final answer (`\\boxed{}`, 'the answer is', an option letter as the answer); VPO logs that "
        "rate every step (`rewards/leak_penalty/mean`, minus the rate), and `--leak_penalty 1` takes a leaking "
        "caption's reward away. `captioner-guarded` is `captioner`'s VPO run with the guard on.",
        "",
        "| captioner | held-out captions stating an answer (%) | during VPO: first 10 → last 10 steps (%) | "
        "its direct answers flagged (%) |",
        "|---|---|---|---|",
        *rows,
        "",
        *([f"Small reasoner, guarded − unguarded VPO captions: {_diff_cell(guard)} points.", ""] if guard else []),
        *(["No held-out caption states an answer, before or after VPO, with or without the guard: the SFT captioner "
           "answers only when asked the question itself (the check flags those answers: last column), and VPO did not "
           "teach it to answer in its captions, so here the guard had nothing to remove.", ""]
          if all(caps[name]["leak_rate"] == 0 for name in caps) else []),
    ]


def _attribution_section(found: dict[str, Any]) -> list[str]:
    """Where each reasoner's errors come from, per captioner: perception (the caption) or reasoning (the reasoner)."""
    split = found.get("attribution")
    if not split:
        return []
    runs, names = split["runs"], {"captioner-sft": "SFT", "captioner": "VPO", "captioner-pool": "pool VPO",
                                  "captioner-guarded": "VPO, leak guard"}
    rows = [f"| {reasoner} | {what} (`{captioner}`) | {r['wrong']} | {r['perception']} | {r['reasoning']} | "
            f"{_pct(r['perception'] / r['wrong']) if r['wrong'] else '—'} |"
            for reasoner in ("reasoner-small", "reasoner-large", "reasoner-other")
            for captioner, what in names.items()
            if (r := runs.get(f"{reasoner} [decoupled] ({captioner})"))]
    lines = [
        "## Where the errors come from: perception or reasoning",
        "",
        "For every wrong (or truncated) decoupled answer the world says exactly whether the caption held every value the "
        "question needs — the bars it names, or all bars for tallest, shortest and sum — each one right "
        "(`Benchmark.caption_holds`, read by `evals.attribution`; every eval report has this split, and `report.html` "
        "filters by it). If it did, the reasoner erred (reasoning); if not, the caption did (perception), even where "
        "the reasoner would have failed anyway.",
        "",
        "| reasoner | captions | wrong | perception | reasoning | perception % |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    small_sft, small_vpo = (runs.get(f"reasoner-small [decoupled] ({c})") for c in ("captioner-sft", "captioner"))
    large_vpo = runs.get("reasoner-large [decoupled] (captioner)")
    if small_sft and small_vpo:
        moves, families = split["moves"], split["families"]
        lines += [
            f"The small reasoner reading VPO captions misses {small_vpo['wrong']} items: {small_vpo['reasoning']} of them "
            f"({_pct(small_vpo['reasoning'] / max(1, small_vpo['wrong']))}%) are its own reasoning, "
            f"{small_vpo['perception']} the caption's. VPO moved its perception errors from {small_sft['perception']} "
            f"to {small_vpo['perception']} and its reasoning errors from {small_sft['reasoning']} to "
            f"{small_vpo['reasoning']}. Of those {small_vpo['reasoning']}, {moves.get('perception/reasoning', 0)} were "
            f"perception errors with SFT captions and {moves.get('correct/reasoning', 0)} were right: the SFT captions "
            "hid them (an item with a bad caption counts as perception), and once the captions hold the values the "
            "reasoner's own mistakes show — "
            + ", ".join(f"{n} {name}" for name, n in families.items()) + " questions.",
            "",
        ]
    if large_vpo and large_vpo["wrong"]:
        lines += [f"The large reasoner with VPO captions: {large_vpo['perception']} of its {large_vpo['wrong']} errors "
                  f"({_pct(large_vpo['perception'] / large_vpo['wrong'])}%) are the caption's.", ""]
    pairs = split["general"]
    decided = {k: n for k, n in pairs.items() if not k.endswith("/unknown")}
    agree = sum(n for k, n in decided.items() if k.split("/")[0] == k.split("/")[1])
    total = sum(pairs.values())
    lines += [
        "Without the world's knowledge, the general rule uses what a run already has: another reasoner answered right "
        "from the same caption (reasoning), or every reasoner missed it from this caption but the captioner's direct "
        f"answer or another captioner's caption got it right (perception). On the same {total} errors it decides "
        f"{sum(decided.values())} and agrees with the exact split on {agree} "
        f"({_pct(agree / max(1, sum(decided.values())))}%); it leaves "
        f"{total - sum(decided.values())} unknown (no run answered right). It calls "
        f"{pairs.get('perception/reasoning', 0)} perception errors reasoning — another reasoner's answer from the same "
        "wrong or incomplete caption was right by chance (two to four options, small sums) — and "
        f"{pairs.get('reasoning/perception', 0)} reasoning errors perception.",
        "",
    ]
    return lines


def install(out: Path, *, command: list[str], config: Any, weights_dir: Path = WEIGHTS_DIR) -> None:
    """Copy the trained fp16 models into the package with a manifest of what made them."""
    for name in MODELS:
        target = weights_dir / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(out / "models" / name, target, ignore=shutil.ignore_patterns("training_log.json", "stage.complete"))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    manifest = {"command": command, "seed": config.seed, "git_commit": commit or None, "config": config.model_dump(),
                "claims": json.loads((out / "claims.json").read_text())}
    (weights_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
