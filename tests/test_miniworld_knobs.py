"""The knobs section of docs/miniworld.md: which configurations it runs, and how the page keeps it."""

from __future__ import annotations

import pytest

from training.miniworld.knobs import BASELINE, KNOBS_END, KNOBS_START, kept_section, knobs, write_section


def test_the_configurations_are_greedy_votes_and_both_captioners():
    found = {knob.name: knob.flags for knob in knobs()}
    assert next(iter(found)) == BASELINE and "--temperature" not in found[BASELINE]
    votes = [flags[flags.index("--reasoner-samples") + 1] for flags in found.values() if "--reasoner-samples" in flags]
    assert votes == ["1", "3", "5", "9"]
    assert any("miniworld:captioner,miniworld:captioner-sft" in flags for flags in found.values())
    assert len({knob.folder for knob in knobs()}) == len(found)  # one output folder each


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("# T\n\nintro\n", f"# T\n\nintro\n\n{KNOBS_START}\nnew\n{KNOBS_END}\n"),
        ("# T\n\n## Stages\nrows\n", f"# T\n\n{KNOBS_START}\nnew\n{KNOBS_END}\n\n## Stages\nrows\n"),
        (f"# T\n{KNOBS_START}\nold\n{KNOBS_END}\n## Stages\n", f"# T\n{KNOBS_START}\nnew\n{KNOBS_END}\n## Stages\n"),
    ],
    ids=["appended", "before-stages", "replaced"],
)
def test_the_section_is_written_between_its_markers(tmp_path, page, expected):
    doc = tmp_path / "miniworld.md"
    doc.write_text(page)
    write_section(doc, ["new"])
    assert doc.read_text() == expected
    assert kept_section(doc) == [KNOBS_START, "new", KNOBS_END, ""]


def test_a_page_without_the_section_keeps_nothing(tmp_path):
    assert kept_section(tmp_path / "missing.md") == []
    (tmp_path / "page.md").write_text(f"# T\n{KNOBS_START}\nunfinished\n")
    assert kept_section(tmp_path / "page.md") == []
