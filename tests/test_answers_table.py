"""The grading table (tests/fixtures/grading/cases.json): cases from the benchmarks' official scorers.

Every case is graded by the library (`rapid_agent.answers.grade_output`) and by the eval harness
(`evals.scoring.grade_sample` on a `Sample`); both must give the case's `expected` verdict. Where a
benchmark's own scorer says otherwise, the case's `note` says why (it guessed an answer the output
does not give, read the answer with an LLM, or mis-parsed a unit). `python tests/test_answers_table.py`
prints the agreement per source (the table in evals/README.md).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from evals.sample import Sample
from evals.scoring import grade_sample
from rapid_agent.answers import grade_output

CASES = json.loads((Path(__file__).parent / "fixtures" / "grading" / "cases.json").read_text())
GRADING_KEYS = ("options", "answer_type", "precision", "tolerance", "unit", "integer_match")
OFFICIAL = [c for c in CASES if c["official"] is not None]
OWN = [c for c in CASES if c["official"] is None]


def _grading(case: dict) -> dict:
    return {key: case[key] for key in GRADING_KEYS if key in case}


def library_verdict(case: dict) -> bool:
    return grade_output(case["output"], case["gold"], **_grading(case)).correct


def harness_verdict(case: dict) -> bool:
    golds = case["gold"] if isinstance(case["gold"], list) else [case["gold"]]
    grading = _grading(case)
    sample = Sample(
        id=case["id"], benchmark=case["benchmark"], question="(question)", answer=golds[0],
        alt_answers=tuple(golds[1:]), **{**grading, "options": tuple(grading["options"]) if "options" in grading else None},
    )
    return grade_sample(sample, case["output"]).correct


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_library_and_harness_give_the_expected_verdict(case):
    library = library_verdict(case)
    assert library is case["expected"], (case["output"][-300:], case["gold"])
    assert harness_verdict(case) is library


def test_table_size_and_sources():
    assert len(OFFICIAL) >= 230
    assert {c["benchmark"] for c in CASES} >= {
        "mathvista", "mathverse", "mathvision", "mmmu", "mmstar", "wemath", "logicvista", "dynamath",
    }
    assert all(":" in c["source"] for c in CASES)  # repository:path of every case
    assert {c["source"].split(":")[0] for c in OFFICIAL} >= {  # issue 21's classes have their scorers' cases
        "mathllm/MATH-V", "MMMU-Benchmark/MMMU", "huggingface/Math-Verify", "ZrrSkywalker/MathVerse",
    }


def test_every_disagreement_with_an_official_scorer_is_explained():
    unexplained = [c["id"] for c in OFFICIAL if c["expected"] != c["official"] and not c.get("note")]
    assert not unexplained


def test_no_false_positive_against_official_or_own_negatives():
    """A wrong answer graded correct is the worst failure: never where the official scorer or our own
    negative cases say wrong."""
    false_positives = [c["id"] for c in CASES if c["expected"] and c["official"] is False]
    assert not false_positives
    assert OWN and not any(c["expected"] for c in OWN)


def agreement(cases: list[dict]) -> tuple[int, int]:
    """(cases whose expected verdict, the rules' verdict, equals the official one; cases), official
    verdicts that rest on a guess (no answer in the output, mapped to the nearest option) left out."""
    fair = [c for c in cases if c["official"] is not None and "nearest choice" not in c.get("note", "")]
    return sum(c["expected"] == c["official"] for c in fair), len(fair)


def test_agreement_with_official_scorers_at_least_95_percent_where_they_read_an_answer():
    agree, total = agreement(CASES)
    print(f"\nrules agree with the official scorers on {agree}/{total} = {agree / total:.1%}")
    assert agree / total >= 0.95, (agree, total)


def agreement_table() -> str:
    """Markdown: agreement of the rules with each source's verdicts."""
    rows: dict[str, list[dict]] = defaultdict(list)
    for case in OFFICIAL:
        rows[case["source"]].append(case)
    lines = ["| source (repository:file) | cases | agree | official guessed (no answer in output) | agree, guesses left out |",
             "|---|---|---|---|---|"]
    for source, cases in sorted(rows.items()):
        guesses = [c for c in cases if "nearest choice" in c.get("note", "")]
        agree = sum(c["expected"] == c["official"] for c in cases)
        fair = len(cases) - len(guesses)
        lines.append(f"| `{source}` | {len(cases)} | {agree} ({agree / len(cases):.0%}) | {len(guesses)} | "
                     f"{agree}/{fair} ({agree / fair:.0%}) |")
    agree = sum(c["expected"] == c["official"] for c in OFFICIAL)
    fair_agree, fair = agreement(OFFICIAL)
    lines.append(f"| **all** | {len(OFFICIAL)} | {agree} ({agree / len(OFFICIAL):.1%}) | {len(OFFICIAL) - fair} | "
                 f"{fair_agree}/{fair} ({fair_agree / fair:.1%}) |")
    lines.append(f"| own negative cases (wrong answers that look right) | {len(OWN)} | "
                 f"{sum(not c['expected'] for c in OWN)} graded wrong | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(agreement_table())
