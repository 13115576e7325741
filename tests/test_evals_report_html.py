"""`report.html`: self-contained (no network), thumbnails embedded, a reasonable size at 5,000 samples, and
usable in a real headless Chromium (a screenshot, filters and the side-by-side view clicked)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil

import pytest
from PIL import Image

from evals import html_report
from evals.attribution import attribute
from evals.html_report import (
    HTML_FILE,
    MAX_OUTPUT_CHARS,
    THUMB_PX,
    benchmark_images,
    category,
    payload,
    render,
)
from evals.report import REPORT_FILE, write_reports
from evals.store import SampleRecord
from rapid_agent.miniworld import world

CHART = world.draw(next(world.tasks("test", 1)).scene)


def rec(run: str, sid: str, *, correct: bool = False, caption: str = "bar A: 3", output: str = "3 \\boxed{3}",
        bench: str = "bundled", mode: str = "decoupled", **kw) -> SampleRecord:
    return SampleRecord(run=run, mode=mode, captioner="cap", reasoner=run, benchmark=bench, id=sid, question=f"q {sid}?",
                        options=["bar A", "bar B"], gold=["4"], captions=[caption] if mode == "decoupled" else [],
                        output=output, prediction="3", correct=correct, **kw)


def embedded(page: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id=data>(.*?)</script>', page, re.S)[1])


def png(color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (600, 300), color).save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------ content (fast)

def test_the_page_is_self_contained_with_its_thumbnails_embedded(tmp_path):
    path = tmp_path / "chart.png"
    CHART.save(path)
    records = [rec("small", "a"), rec("large", "a", correct=True), rec("small", "b"), rec("small", "c")]
    images = {("bundled", "a"): (png(),), ("bundled", "b"): (str(path),), ("bundled", "c"): (CHART, png("blue"))}
    page = render(records, attribution=attribute(records), images=images)
    # nothing is fetched: no address, no linked sheet, images only as data (the script's `src="${src}"` sets those)
    assert not re.search(r"https?://|<link|@import|url\(|src=\"(?!data:|\$\{src\})", page)
    thumbs = re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", page)
    assert len(thumbs) == 4  # once per image of each sample, not once per run
    sizes = [Image.open(io.BytesIO(base64.b64decode(t))).size for t in thumbs]
    assert max(max(s) for s in sizes) == THUMB_PX and sizes[0] == (THUMB_PX, THUMB_PX // 2)
    assert "Where the errors come from" in page and "<td>small</td><td>bundled</td><td>3</td>" in page


def test_the_data_cannot_close_its_script_element():
    records = [rec("small", "a", caption="</script><script>alert(1)</script>", output="<!-- </SCRIPT> -->")]
    page = render(records)
    assert page.count("</script>") == 2  # the data's and the code's own
    assert embedded(page)["captions"] == [["</script><script>alert(1)</script>"]]


def test_the_payload_holds_each_sample_and_caption_once_and_every_result():
    long = "x" * (3 * MAX_OUTPUT_CHARS) + " the end \\boxed{3}"
    records = [rec("small", "a"), rec("large", "a", correct=True, output=long), rec("small", "b", error="timeout"),
               rec("small", "c", truncated=True), rec("cap [direct]", "a", mode="direct", correct=True)]
    data = payload(records, attribution=attribute(records))
    assert data["runs"] == ["small", "large", "cap [direct]"]
    assert [s["id"] for s in data["samples"]] == ["a", "b", "c"] and data["captions"] == [["bar A: 3"]]
    assert [r["v"] for r in data["results"]] == ["wrong", "correct", "error", "truncated", "correct"]
    assert [r["cap"] for r in data["results"]] == [0, 0, 0, 0, None]
    assert data["results"][0]["a"] == "reasoning" and "large answered right" in data["results"][0]["why"]
    assert data["results"][3]["a"] == "unknown" and data["results"][2]["a"] is None  # errors are not attributed
    clipped = data["results"][1]["out"]
    assert len(clipped) < MAX_OUTPUT_CHARS + 200 and clipped.endswith("the end \\boxed{3}") and "left out here" in clipped


@pytest.mark.parametrize(("metadata", "expected"), [
    ({"category": "bar"}, "bar"), ({"family": "sum", "values": [1, 2]}, "sum"),
    ({"task": "figure QA", "category": "math"}, "math"), ({"subject": "Math", "domain": "Science"}, "Math"),
    ({"values": [1, 2]}, ""), ({"category": None, "skill": "spatial"}, "spatial"), ({}, ""),
])
def test_the_category_is_the_first_field_a_benchmark_names_it_by(metadata, expected):
    assert category(metadata) == expected


def test_images_are_loaded_again_from_the_benchmarks_the_config_names(tmp_path):
    records = [rec("small", "bars-1a"), rec("small", "bars-2b")]
    config = {"benchmarks": [{"name": "bundled", "split": "test", "path": None}]}
    images, notes = benchmark_images(records, config)
    assert set(images) == {("bundled", "bars-1a"), ("bundled", "bars-2b")} and notes == []
    merged = {"merged_from": {"x": config, "y": {"benchmarks": [{"name": "mmstar", "split": "val", "path": str(tmp_path / "gone")}]}}}
    images, notes = benchmark_images([*records, rec("small", "1", bench="mmstar")], merged)
    assert len(images) == 2 and len(notes) == 1 and notes[0].startswith("No images of mmstar:")  # named, not fatal
    assert benchmark_images(records, None) == ({}, [])
    _, notes = benchmark_images(records, {"benchmarks": [{"name": "bundled", "split": "test", "shards": 3}]})
    assert len(notes) == 1 and notes[0].startswith("No images of bundled:")  # a reference of another version


def test_write_reports_writes_the_page_and_the_attribution_table(tmp_path):
    records = [rec("small", "a"), rec("large", "a", correct=True), rec("small", "b"), rec("large", "b")]
    write_reports(records, tmp_path, config=None)
    report = (tmp_path / REPORT_FILE).read_text()
    assert "## Where the errors come from" in report and "| small | bundled | 2 | 0 | 1 | 1 | 0.0 | evidence 1 |" in report
    assert len(embedded((tmp_path / HTML_FILE).read_text())["results"]) == 4


def big_page(monkeypatch, samples: int = 5000) -> tuple[str, list[SampleRecord]]:
    """Two runs on `samples` miniworld-like samples, each with a real chart thumbnail (made once, reused)."""
    thumb = html_report.thumbnail(CHART)
    monkeypatch.setattr(html_report, "thumbnail", lambda source: thumb)
    families = ("value", "tallest", "shortest", "difference", "sum")
    records = [
        rec(run, f"s{i:05d}", correct=i % (k + 2) == 0, caption="bar A: 7; bar B: 15; bar C: 4; bar D: 11",
            output="7 + 15 + 4 + 11 = 37. " * 20 + "\\boxed{37}", metadata={"family": families[i % 5]})
        for i in range(samples) for k, run in enumerate(("small [decoupled]", "large [decoupled]"))
    ]
    images = {(r.benchmark, r.id): (CHART,) for r in records}
    return render(records, attribution=attribute(records), images=images), records


def test_five_thousand_samples_make_a_file_of_reasonable_size(monkeypatch):
    page, _ = big_page(monkeypatch)
    size = len(page.encode())
    assert size / 5000 < 8000, f"{size / 1e6:.1f} MB for 5,000 samples"  # a thumbnail, two results: under 8 KB
    assert len(embedded(page)["samples"]) == 5000


# ------------------------------------------------------------------------------ a real browser (slow)

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser_page():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test drives Chromium with playwright")
    binary = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if binary is None:
        pytest.skip(f"no Chromium on this machine (looked for {', '.join(BROWSERS)}; Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
        assert errors == [], errors


def visible(page, attribute: str) -> list[str]:
    return page.eval_on_selector_all("#rows tbody tr", f"rows => rows.map(r => r.dataset.{attribute})")


@pytest.mark.slow
def test_the_page_in_headless_chromium_filters_pages_and_compares(browser_page, monkeypatch, tmp_path):
    text, records = big_page(monkeypatch)
    path = tmp_path / HTML_FILE
    path.write_text(text, encoding="utf-8")
    page = browser_page
    page.goto(path.as_uri())
    assert len(visible(page, "verdict")) == 50  # a page at a time
    assert page.text_content("#status").strip().startswith("10000 results")
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot))
    image = Image.open(shot).convert("L")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.getextrema()[0] < 100 < image.getextrema()[1]
    assert len(image.getcolors(1 << 16) or range(1 << 16)) > 20  # text, thumbnails and badges, not a blank page

    wrong = [r for r in records if not r.correct]
    page.select_option("#f-verdict", "wrong")  # the filter, as a user picks it
    assert set(visible(page, "verdict")) == {"wrong"}
    assert page.text_content("#status").strip().startswith(f"{len(wrong)} results ({len(wrong)} wrong)")
    page.select_option("#f-run", "large [decoupled]")
    assert set(visible(page, "run")) == {"large [decoupled]"} and set(visible(page, "verdict")) == {"wrong"}
    page.click("#next")
    assert "page 2 of" in page.text_content("#status") and "verdict=wrong" in page.url

    page.click("#view-compare")  # small vs large on the same samples, where they disagree first
    a, b = visible(page, "a"), visible(page, "b")
    assert len(a) == 50 and all((x == "correct") != (y == "correct") for x, y in zip(a, b, strict=True))
    page.select_option("#c-show", "both right")
    assert set(visible(page, "a")) == set(visible(page, "b")) == {"correct"}

    page.goto(path.as_uri() + "#verdict=correct&run=small%20%5Bdecoupled%5D")  # a linked view
    page.reload()
    assert set(visible(page, "verdict")) == {"correct"} and set(visible(page, "run")) == {"small [decoupled]"}
