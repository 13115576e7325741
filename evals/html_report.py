"""`report.html`: a run folder's samples to look at, in one self-contained file.

No network: CSS and script are inline, the samples are embedded JSON and images small base64 JPEG
thumbnails. Each result shows its image, question, options, caption(s), the reasoning (folded, long
outputs cut to their head and tail), prediction, gold, verdict, outcome (error, truncated) and, for
a wrong decoupled answer, where the error comes from (`evals.attribution`). Results are filtered by
run, benchmark, category, verdict, error source and text, and rendered a page at a time, so 5,000
samples stay usable; the filters live in the URL fragment (`#verdict=wrong&run=...`), so a view can
be linked. A second view sets two runs side by side on the samples both have, the samples where they
disagree first (a VPO captioner against the SFT one, a small reasoner against a large one).
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from evals.attribution import AttributionSplit
from evals.metrics import status
from evals.sample import ImageSource
from evals.store import SampleRecord
from rapid_agent.errors import RapidError

HTML_FILE = "report.html"
THUMB_PX = 160  # longest side of a thumbnail
THUMB_QUALITY = 70
MAX_IMAGES = 4  # thumbnails per sample
MAX_OUTPUT_CHARS = 8000  # longer outputs keep their head and tail (the conclusion); samples.jsonl has them whole
CATEGORY_KEYS = ("category", "family", "task", "version", "subject", "skill", "concept")
"""The metadata field that names a sample's category, the first one present (benchmarks name it differently)."""
SampleKey = tuple[str, str]  # (benchmark label, sample id)
log = logging.getLogger(__name__)


def write_html(
    records: Sequence[SampleRecord], path: Path, *, attribution: AttributionSplit | None = None,
    config: Mapping[str, Any] | None = None,
) -> None:
    """Write `report.html` for `records`, with the images of the benchmarks `config` names (none without it)."""
    images, notes = benchmark_images(records, config)
    Path(path).write_text(render(records, attribution=attribution, images=images, notes=notes), encoding="utf-8")


def benchmark_images(
    records: Sequence[SampleRecord], config: Mapping[str, Any] | None
) -> tuple[dict[SampleKey, tuple[ImageSource, ...]], list[str]]:
    """The images of the records' samples, loaded again from the benchmarks of a run's (or merged runs')
    `config`; a benchmark that cannot be loaded (offline Hub, a moved local copy) is named in the notes."""
    from evals.config import BenchmarkRef
    from evals.tasks import get_benchmark

    wanted: dict[str, set[str]] = {}
    for record in records:
        wanted.setdefault(record.benchmark, set()).add(record.id)
    configs = list((config or {}).get("merged_from", {}).values()) or ([config] if config else [])
    refs = {json.dumps(ref, sort_keys=True): ref for c in configs for ref in c.get("benchmarks", [])}
    images: dict[SampleKey, tuple[ImageSource, ...]] = {}
    notes = []
    for text, data in sorted(refs.items()):
        try:
            ref = BenchmarkRef.model_validate(data)
            if ref.label not in wanted:
                continue
            samples = get_benchmark(ref.name).load(ref.split, ref.path)
        except (RapidError, ValueError) as exc:  # ValueError: a reference this version cannot read
            log.warning("report.html: no images of %s: %s", text, exc)
            notes.append(f"No images of {data.get('name', text) if isinstance(data, dict) else text}: {str(exc)[:300]}")
            continue
        images |= {(ref.label, s.id): s.images for s in samples if s.id in wanted[ref.label]}
    return images, notes


def thumbnail(source: ImageSource, size: int = THUMB_PX) -> str:
    """A small JPEG of an image (bytes, a file path or a PIL image) as a data URL."""
    image = source if isinstance(source, Image.Image) else Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    image.draft("RGB", (size, size))  # JPEGs decode at a reduced scale
    image = image.copy()
    image.thumbnail((size, size))
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, "white")
        background.paste(image, mask=image.getchannel("A"))
        image = background
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=THUMB_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def category(metadata: Mapping[str, Any]) -> str:
    """The sample's category (see `CATEGORY_KEYS`), or '' when its benchmark names none."""
    return next((str(metadata[k]) for k in CATEGORY_KEYS if isinstance(metadata.get(k), (str, int)) and str(metadata[k])), "")


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_OUTPUT_CHARS:
        return text
    head, tail = MAX_OUTPUT_CHARS // 4, MAX_OUTPUT_CHARS - MAX_OUTPUT_CHARS // 4
    return f"{text[:head]}\n\n[… {len(text) - head - tail} characters left out here; samples.jsonl has them …]\n\n{text[-tail:]}"


def _thumbs(sources: Sequence[ImageSource], key: SampleKey) -> list[str]:
    try:
        return [thumbnail(s) for s in sources[:MAX_IMAGES]]
    except (OSError, ValueError) as exc:  # an unreadable image: the sample is shown without it
        log.warning("report.html: no thumbnail for %s/%s: %s", *key, exc)
        return []


def payload(
    records: Sequence[SampleRecord], *, attribution: AttributionSplit | None = None,
    images: Mapping[SampleKey, Sequence[ImageSource]] | None = None,
) -> dict[str, Any]:
    """The embedded data: samples (once each), captions (once each), runs and one entry per result."""
    images = images or {}
    causes = {(a.run, a.benchmark, a.id): a for a in (attribution.samples if attribution else [])}
    runs: dict[str, int] = {}
    samples: dict[SampleKey, int] = {}
    sample_rows: list[dict[str, Any]] = []
    captions: dict[str, int] = {}
    results = []
    for r in records:
        key = (r.benchmark, r.id)
        if key not in samples:
            samples[key] = len(sample_rows)
            sample_rows.append({"b": r.benchmark, "id": r.id, "q": r.question, "o": r.options, "g": r.gold,
                                "c": category(r.metadata), "img": _thumbs(images.get(key, ()), key)})
        cap = json.dumps(r.captions) if r.captions else None
        if cap is not None and cap not in captions:
            captions[cap] = len(captions)
        found = causes.get(r.key)
        results.append({
            "s": samples[key], "r": runs.setdefault(r.run, len(runs)), "m": r.mode,
            "v": status(correct=r.correct, error=r.error is not None, truncated=r.truncated),
            "cap": captions[cap] if cap is not None else None, "t": r.tentative_answer, "out": _clip(r.output),
            "p": r.prediction, "err": r.error, "a": found.cause if found else None, "why": found.why if found else None,
        })
    return {"runs": list(runs), "samples": sample_rows, "captions": [json.loads(c) for c in captions],
            "results": results}


def render(
    records: Sequence[SampleRecord], *, attribution: AttributionSplit | None = None,
    images: Mapping[SampleKey, Sequence[ImageSource]] | None = None, notes: Sequence[str] = (),
) -> str:
    """The whole page."""
    data = json.dumps(payload(records, attribution=attribution, images=images), ensure_ascii=False, separators=(",", ":"))
    data = data.replace("</", "<\\/")  # nothing in the data can close its script element
    runs = len({r.run for r in records})
    head = (f"{len(records)} results of {runs} run{'s' * (runs != 1)} on "
            f"{len({(r.benchmark, r.id) for r in records})} samples; all data is in this file (no network).")
    return _PAGE.format(
        css=_CSS, script=_SCRIPT, data=data, head=html.escape(head),
        notes="".join(f"<p class=note>{html.escape(n)}</p>" for n in notes),
        attribution=_attribution_table(attribution),
    )


def _attribution_table(split: AttributionSplit | None) -> str:
    if split is None or not split.rows:
        return ""
    cells = ["run", "benchmark", "wrong", "perception", "reasoning", "unknown", "perception % of attributed", "decided by"]
    rows = ["<tr>" + "".join(f"<th>{c}</th>" for c in cells) + "</tr>"]
    for r in split.rows:
        share = f"{100 * r.perception_share:.1f}" if r.perception_share is not None else "—"
        basis = ", ".join(f"{k} {v}" for k, v in r.by_basis.items()) or "—"
        values = [r.run, r.benchmark, r.wrong, r.perception, r.reasoning, r.unknown, share, basis]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in values) + "</tr>")
    return ("<details open id=attribution><summary>Where the errors come from (wrong or truncated decoupled answers)"
            "</summary><table class=split>" + "".join(rows) + "</table><p class=note>exact: the benchmark's own check "
            "of the caption; evidence: another run answered right from the same caption (reasoning), or only from "
            "another caption or the captioner's direct answer (perception); judge: an LLM read the caption; unknown: "
            "no run answered it right. Filter the results by error source below.</p></details>")


_CSS = """
[hidden]{display:none!important}
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}
h1{font-size:1.4em;margin:.2em 0}.note{color:#555;margin:.3em 0}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 6px;vertical-align:top;text-align:left}
table.split td:nth-child(n+3){text-align:right}
nav button{font-size:1em;padding:4px 10px}nav button.on{font-weight:bold;background:#def}
.bar{display:flex;flex-wrap:wrap;gap:.6em 1.2em;align-items:center;margin:.6em 0}
#rows{width:100%}#rows td{max-width:34em}#rows td:first-child{width:170px}#rows img{max-width:160px;display:block;margin-bottom:2px}
pre{white-space:pre-wrap;word-break:break-word;margin:0;font:12px/1.35 ui-monospace,monospace;max-height:30em;overflow:auto}
.v{font-weight:bold;padding:0 4px;border-radius:3px}.v-correct{background:#cfc}.v-wrong{background:#fcc}
.v-truncated{background:#fec}.v-error{background:#ccc}.cause{font-size:.9em;color:#724}.dim{color:#777}
.cap{background:#f6f6f0;padding:2px 4px;margin:2px 0}
"""

_PAGE = """<!doctype html>
<html lang=en><head><meta charset="utf-8"><title>Eval report</title><style>{css}</style></head>
<body>
<h1>Eval report</h1>
<p class=note>{head}</p>{notes}
{attribution}
<nav><button id=view-list>Results</button> <button id=view-compare>Two runs side by side</button></nav>
<div class=bar id=filters>
<label id=l-run>run <select id=f-run></select></label>
<label>benchmark <select id=f-bench></select></label>
<label>category <select id=f-cat></select></label>
<label id=l-verdict>verdict <select id=f-verdict></select></label>
<label id=l-cause>error source <select id=f-cause></select></label>
<label>search <input id=f-text size=16 placeholder="id, question, caption"></label>
</div>
<div class=bar id=pair hidden>
<label>A <select id=c-a></select></label> <label>B <select id=c-b></select></label>
<label>show <select id=c-show></select></label>
</div>
<div class=bar><button id=prev>&lsaquo; previous</button><span id=status></span><button id=next>next &rsaquo;</button></div>
<table id=rows><thead></thead><tbody></tbody></table>
<script type="application/json" id=data>{data}</script>
<script>{script}</script>
</body></html>
"""

_SCRIPT = r"""
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const PAGE = 50, $ = id => document.getElementById(id);
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
const uniq = xs => [...new Set(xs)].filter(x => x !== "" && x != null).sort();
const S = {view: "list", run: "", bench: "", cat: "", verdict: "", cause: "", text: "", a: "", b: "", show: "", page: 0};
const decoupled = D.runs.filter((_, i) => D.results.some(r => r.r === i && r.m === "decoupled"));
const fill = (id, values, all) => { $(id).innerHTML = (all ? `<option value="">${all}</option>` : "") +
  values.map(v => `<option value="${esc(v)}">${esc(v)}</option>`).join(""); };
fill("f-run", D.runs, "all runs"); fill("f-bench", uniq(D.samples.map(s => s.b)), "all");
fill("f-cat", uniq(D.samples.map(s => s.c)), "all"); fill("f-verdict", ["correct", "wrong", "truncated", "error"], "all");
fill("f-cause", ["perception", "reasoning", "unknown"], "all"); fill("c-a", D.runs); fill("c-b", D.runs);
fill("c-show", ["disagree", "only A right", "only B right", "both wrong", "both right"], "all, disagreements first");
S.a = decoupled[0] ?? D.runs[0] ?? ""; S.b = decoupled[1] ?? D.runs[1] ?? S.a;
const DEFAULTS = {...S};

function readHash() {  // the fragment names what differs from the defaults
  const h = new URLSearchParams(location.hash.slice(1));
  Object.assign(S, DEFAULTS);
  for (const k of Object.keys(S)) if (h.has(k)) S[k] = k === "page" ? Math.max(0, (+h.get(k) || 1) - 1) : h.get(k);
}
function writeHash() {
  const h = new URLSearchParams();
  for (const [k, v] of Object.entries(S)) if (v !== DEFAULTS[k]) h.set(k, k === "page" ? v + 1 : v);
  history.replaceState(null, "", "#" + h.toString());
}
const sampleOk = s => (!S.bench || s.b === S.bench) && (!S.cat || s.c === S.cat);
const textOk = (s, rs) => !S.text || [s.id, s.q, ...rs.flatMap(r => r.cap == null ? [] : D.captions[r.cap])]
  .join("\n").toLowerCase().includes(S.text.toLowerCase());

function listRows() {
  const run = S.run === "" ? -1 : D.runs.indexOf(S.run);
  return D.results.filter(r => (run < 0 || r.r === run) && (!S.verdict || r.v === S.verdict) &&
    (!S.cause || r.a === S.cause) && sampleOk(D.samples[r.s]) && textOk(D.samples[r.s], [r]));
}
function pairRows() {
  const a = D.runs.indexOf(S.a), b = D.runs.indexOf(S.b), byA = new Map(), pairs = [];
  for (const r of D.results) if (r.r === a) byA.set(r.s, r);
  for (const r of D.results) if (r.r === b && byA.has(r.s)) pairs.push([byA.get(r.s), r]);
  const kind = ([x, y]) => x.v === "correct" ? (y.v === "correct" ? "both right" : "only A right")
    : (y.v === "correct" ? "only B right" : "both wrong");
  const rank = {"only A right": 0, "only B right": 0, "both wrong": 1, "both right": 2};
  return pairs.filter(p => sampleOk(D.samples[p[0].s]) && textOk(D.samples[p[0].s], p) &&
      (!S.show || (S.show === "disagree" ? rank[kind(p)] === 0 : kind(p) === S.show)))
    .map((p, i) => [rank[kind(p)], i, p]).sort((x, y) => x[0] - y[0] || x[1] - y[1]).map(x => x[2]);
}
function sampleCell(s) {
  return `<td>${s.img.map(src => `<img src="${src}" alt="">`).join("")}<div class=dim>${esc(s.b)} · ${esc(s.id)}` +
    `${s.c ? " · " + esc(s.c) : ""}</div></td><td>${esc(s.q)}${s.o ? "<ol type=A>" + s.o.map(o => `<li>${esc(o)}`).join("") + "</ol>" : ""}` +
    `<div>gold <b>${esc(s.g.join(" | "))}</b></div></td>`;
}
function resultCell(r, withRun) {
  const caps = r.cap == null ? "" : D.captions[r.cap].map(c => `<pre class=cap>${esc(c)}</pre>`).join("");
  const out = r.out == null ? "" : `<details><summary>reasoning (${r.out.length} characters)</summary><pre>${esc(r.out)}</pre></details>`;
  return `<td>${withRun ? `<div class=dim>${esc(D.runs[r.r])}</div>` : ""}${caps}` +
    `${r.t ? `<div class=dim>tentative answer: ${esc(r.t)}</div>` : ""}${out}` +
    `<div>prediction <b>${esc(r.p ?? "—")}</b> <span class="v v-${r.v}">${r.v}</span></div>` +
    `${r.err ? `<div class=dim>error: ${esc(r.err)}</div>` : ""}${r.a ? `<div class=cause>error source: <b>${r.a}</b> — ${esc(r.why)}</div>` : ""}</td>`;
}
function render() {
  writeHash();
  const list = S.view === "list";
  for (const [id, v] of [["f-run", S.run], ["f-bench", S.bench], ["f-cat", S.cat], ["f-verdict", S.verdict],
    ["f-cause", S.cause], ["f-text", S.text], ["c-a", S.a], ["c-b", S.b], ["c-show", S.show]]) $(id).value = v;
  $("pair").hidden = list; for (const id of ["l-run", "l-verdict", "l-cause"]) $(id).hidden = !list;
  $("view-list").className = list ? "on" : ""; $("view-compare").className = list ? "" : "on";
  const rows = list ? listRows() : pairRows(), pages = Math.max(1, Math.ceil(rows.length / PAGE));
  S.page = Math.min(S.page, pages - 1);
  const shown = rows.slice(S.page * PAGE, (S.page + 1) * PAGE);
  const counts = {}; for (const r of list ? rows : []) counts[r.v] = (counts[r.v] || 0) + 1;
  $("status").textContent = ` ${rows.length} ${list ? "results" : "samples in both runs"}` +
    (list ? " (" + Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", ") + ")" : "") +
    ` · page ${S.page + 1} of ${pages} `;
  $("prev").disabled = S.page === 0; $("next").disabled = S.page >= pages - 1;
  document.querySelector("#rows thead").innerHTML = list ? "<tr><th>image</th><th>question</th><th>run · caption · reasoning · answer</th></tr>"
    : `<tr><th>image</th><th>question</th><th>A: ${esc(S.a)}</th><th>B: ${esc(S.b)}</th></tr>`;
  document.querySelector("#rows tbody").innerHTML = shown.map(x => list
    ? `<tr class=result data-run="${esc(D.runs[x.r])}" data-verdict="${x.v}" data-cause="${x.a ?? ""}">${sampleCell(D.samples[x.s])}${resultCell(x, true)}</tr>`
    : `<tr class=pair data-a="${x[0].v}" data-b="${x[1].v}">${sampleCell(D.samples[x[0].s])}${resultCell(x[0], false)}${resultCell(x[1], false)}</tr>`).join("");
}
const bind = (id, key) => $(id).addEventListener(id === "f-text" ? "input" : "change", e => { S[key] = e.target.value; S.page = 0; render(); });
[["f-run", "run"], ["f-bench", "bench"], ["f-cat", "cat"], ["f-verdict", "verdict"], ["f-cause", "cause"], ["f-text", "text"],
 ["c-a", "a"], ["c-b", "b"], ["c-show", "show"]].forEach(([id, key]) => bind(id, key));
$("view-list").onclick = () => { S.view = "list"; S.page = 0; render(); };
$("view-compare").onclick = () => { S.view = "compare"; S.page = 0; render(); };
$("prev").onclick = () => { S.page--; render(); window.scrollTo(0, 0); };
$("next").onclick = () => { S.page++; render(); window.scrollTo(0, 0); };
addEventListener("hashchange", () => { readHash(); render(); });
readHash(); render();
"""
